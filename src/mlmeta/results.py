"""Results of a multilevel fit: an immutable object with labelled pandas output.

Everything is computed at fit time or on demand by methods that return new objects; a result is
never modified. ``summary()`` prints like metafor's ``print.rma.mv``; ``to_dict()`` gives the
numbers under the keys of the reference cases (and of ``mlmeta fit --json``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlmeta.core.fit import CoreFit
from mlmeta.core.inference import CoefTests
from mlmeta.data import ModelData

__all__ = ["MetaResults", "Prediction"]


@dataclass(frozen=True)
class Prediction:
    """Predicted value(s) with confidence and prediction intervals (metafor's ``predict``)."""

    pred: np.ndarray
    se: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    pi_lb: np.ndarray
    pi_ub: np.ndarray
    transformed: str | None = None

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"pred": self.pred, "se": self.se, "ci_lb": self.ci_lb,
                             "ci_ub": self.ci_ub, "pi_lb": self.pi_lb, "pi_ub": self.pi_ub})

    def to_dict(self, i: int = 0) -> dict[str, float | None]:
        se = None if self.transformed else float(self.se[i])
        return {"pred": float(self.pred[i]), "se": se, "ci_lb": float(self.ci_lb[i]),
                "ci_ub": float(self.ci_ub[i]), "pi_lb": float(self.pi_lb[i]),
                "pi_ub": float(self.pi_ub[i])}


@dataclass(frozen=True)
class MetaResults:
    """Fitted multilevel meta-analytic model (see :func:`mlmeta.rma_mv`)."""

    data: ModelData
    core: CoreFit
    method: str
    test: str
    dfs: str
    level: float
    measure: str | None
    level_names: tuple[str, ...]
    tests: CoefTests
    btt: np.ndarray
    QM: float
    QM_df: tuple[int, float | None]
    QMp: float
    QE: float
    QE_df: int
    QEp: float
    fitstats: dict[str, float]
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ basic numbers
    @property
    def k(self) -> int:
        """Number of effect sizes used."""
        return self.data.k

    @property
    def p(self) -> int:
        return self.data.X.shape[1]

    @property
    def coef_names(self) -> tuple[str, ...]:
        return self.data.coef_names

    @property
    def beta(self) -> pd.Series:
        return pd.Series(self.core.beta, index=list(self.coef_names), name="estimate")

    @property
    def se(self) -> pd.Series:
        return pd.Series(self.tests.se, index=list(self.coef_names), name="se")

    @property
    def vcov(self) -> pd.DataFrame:
        n = list(self.coef_names)
        return pd.DataFrame(self.core.vcov, index=n, columns=n)

    @property
    def sigma2(self) -> pd.Series:
        """Variance components, named by level (outer to inner)."""
        return pd.Series(self.core.sigma2, index=list(self.level_names), name="sigma2",
                         dtype=float)

    @property
    def n_levels(self) -> list[int]:
        return list(self.core.problem.st.n_groups)

    @property
    def df(self) -> np.ndarray | None:
        return self.tests.df

    @property
    def logLik(self) -> float:
        return self.fitstats["logLik"]

    @property
    def coefs(self) -> pd.DataFrame:
        """Coefficient table: estimate, se, z or t, df, p, CI bounds."""
        t = self.tests
        out = pd.DataFrame({
            "estimate": self.core.beta, "se": t.se,
            ("tval" if self.test == "t" else "zval"): t.stat,
        }, index=list(self.coef_names))
        if t.df is not None:
            out["df"] = t.df
        out["pval"] = t.pval
        out["ci_lb"] = t.ci_lb
        out["ci_ub"] = t.ci_ub
        return out

    @property
    def variance_components(self) -> pd.DataFrame:
        """Table of the variance components (estimate, sqrt, number of levels, fixed)."""
        return pd.DataFrame({
            "estimate": self.core.sigma2, "sqrt": np.sqrt(self.core.sigma2),
            "n_levels": self.n_levels, "fixed": self.core.fixed,
        }, index=list(self.level_names))

    @property
    def intercept_only(self) -> bool:
        return self.coef_names == ("intrcpt",)

    @property
    def converged(self) -> bool:
        return self.core.optim.converged

    # ------------------------------------------------------------------ predictions
    def predict(self, newmods=None, *, transf: str | None = None, level: float | None = None,
                ) -> Prediction:
        """Predicted effect for a row of moderator values (default: the intercept-only model).

        pred = x'b, se = sqrt(x' V_b x), CI = pred -+ crit se, PI = pred -+ crit
        sqrt(se^2 + sum sigma2) (metafor's ``predict.rma``; crit from z or t with the smallest
        df of the coefficients involved). ``transf="ztor"`` back-transforms Fisher z to r.
        ``newmods`` is a DataFrame (columns as in the formula), a dict, or a design row.
        """
        lv = (self.level if level is None else float(level)) / 100.0
        if newmods is None:
            if not self.intercept_only:
                Xn = self.data.X
            else:
                Xn = np.ones((1, 1))
        elif isinstance(newmods, (pd.DataFrame, dict)):
            nd = pd.DataFrame(newmods) if isinstance(newmods, dict) else newmods
            Xn = self.data.formula.design(nd)
        else:
            Xn = np.atleast_2d(np.asarray(newmods, dtype=float))
            if Xn.shape[1] != self.p:
                from mlmeta.errors import InputError
                raise InputError(f"newmods has {Xn.shape[1]} columns but the model has "
                                 f"{self.p} coefficients ({', '.join(self.coef_names)})")
        b = self.core.beta
        V = self.core.vcov
        pred = Xn @ b
        se = np.sqrt(np.einsum("ij,jk,ik->i", Xn, V, Xn))
        if self.test == "t":
            df = np.array([np.min(self.tests.df[row != 0]) if np.any(row != 0) else self.k - self.p
                           for row in Xn])
            crit = stats.t.isf((1 - lv) / 2, df)
        else:
            crit = np.full(len(pred), stats.norm.isf((1 - lv) / 2))
        s2 = float(np.sum(self.core.sigma2))
        out = [pred, se, pred - crit * se, pred + crit * se,
               pred - crit * np.sqrt(se ** 2 + s2), pred + crit * np.sqrt(se ** 2 + s2)]
        if transf is not None:
            if transf not in ("ztor", "tanh"):
                from mlmeta.errors import InputError
                raise InputError(f"transf must be 'ztor'; got {transf!r}")
            pr, _, a, b_, c, d = out
            return Prediction(np.tanh(pr), np.full(len(pr), np.nan), np.tanh(a), np.tanh(b_),
                              np.tanh(c), np.tanh(d), transformed="ztor")
        return Prediction(*out)

    # ------------------------------------------------------------------ output
    def to_dict(self, blocks: tuple[str, ...] = ()) -> dict[str, Any]:
        """All reported numbers under the keys of the reference cases' ``expect`` block.

        ``blocks`` adds optional blocks (I2, R2, profile_ci, lrt_drop, robust_cr2, robust_cr1,
        egger, loo_cluster, cooks_cluster, rstandard).
        """
        t = self.tests
        d: dict[str, Any] = {
            "k": self.k, "p": self.p, "n_levels": self.n_levels,
            "sigma2": [float(x) for x in self.core.sigma2],
            "beta": _fl(self.core.beta), "se": _fl(t.se), "stat": _fl(t.stat),
            "df": None if t.df is None else [_num(x) for x in t.df],
            "pval": _fl(t.pval), "ci_lb": _fl(t.ci_lb), "ci_ub": _fl(t.ci_ub),
            "vcov": [_fl(r) for r in self.core.vcov],
            "QE": self.QE, "QE_df": self.QE_df, "QEp": self.QEp,
            "QM": self.QM, "QM_df": [self.QM_df[0], _num(self.QM_df[1])], "QMp": self.QMp,
        }
        d.update(self.fitstats)
        if self.intercept_only:
            d["predict"] = self.predict().to_dict()
            if self.measure == "ZCOR":
                d["predict_r"] = self.predict(transf="ztor").to_dict()
        d["coef_names"] = list(self.coef_names)
        d["level_names"] = list(self.level_names)
        d["method"], d["test"], d["dfs"] = self.method, self.test, self.dfs
        d["k_all"] = self.data.k_all
        d["rows_dropped"] = len(self.data.dropped)
        d["converged"] = self.converged
        if blocks:
            from mlmeta.blocks import compute_blocks
            d.update(compute_blocks(self, blocks))
        return d

    def to_json(self, blocks: tuple[str, ...] = (), **kw) -> str:
        return json.dumps(self.to_dict(blocks), allow_nan=True, **kw)

    def summary(self, digits: int = 4) -> str:
        """metafor-style printout (see :mod:`mlmeta.printing`)."""
        from mlmeta.printing import format_summary
        return format_summary(self, digits)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return (f"<MetaResults k={self.k} p={self.p} method={self.method} "
                f"levels={'/'.join(self.data.random) or 'none'}>")


def _num(x):
    if x is None:
        return None
    x = float(x)
    return int(x) if x.is_integer() else x


def _fl(a) -> list[float]:
    return [float(x) if math.isfinite(float(x)) else float("nan") for x in np.asarray(a).ravel()]

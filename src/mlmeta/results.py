"""Results of a multilevel fit: an immutable object with labelled pandas output.

Everything is computed at fit time or on demand by methods that return new objects; a result is
never modified. ``summary()`` prints like metafor's ``print.rma.mv``; ``to_dict()`` gives the
numbers under the keys of the reference cases (and of ``mlmeta fit --json``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlmeta._lazy import lazy

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas")

from mlmeta.core.dist import norm_isf, t_isf
from mlmeta.core.fit import CoreFit
from mlmeta.core.inference import CoefTests
from mlmeta.io.prepare import ModelData, id_codes
from mlmeta.spec import ModelSpec

#: above this many effect sizes the default diagnostics skip the profile-shape check (a note
#: says so): its refits would cost many times the fit itself
PROFILE_CHECK_MAX_K = 2000

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
        return pd.DataFrame(
            {
                "pred": self.pred,
                "se": self.se,
                "ci_lb": self.ci_lb,
                "ci_ub": self.ci_ub,
                "pi_lb": self.pi_lb,
                "pi_ub": self.pi_ub,
            }
        )

    def to_dict(self, i: int = 0) -> dict[str, float | None]:
        se = None if self.transformed else float(self.se[i])
        return {
            "pred": float(self.pred[i]),
            "se": se,
            "ci_lb": float(self.ci_lb[i]),
            "ci_ub": float(self.ci_ub[i]),
            "pi_lb": float(self.pi_lb[i]),
            "pi_ub": float(self.pi_ub[i]),
        }


@dataclass(frozen=True)
class MetaResults:
    """Fitted multilevel meta-analytic model (see :func:`mlmeta.rma_mv`)."""

    data: ModelData
    core: CoreFit
    spec: ModelSpec
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

    # ------------------------------------------------------------------ the specification
    @property
    def method(self) -> str:
        return self.spec.method

    @property
    def test(self) -> str:
        return self.spec.test

    @property
    def dfs(self) -> str:
        return self.spec.dfs

    @property
    def level(self) -> float:
        """Confidence level as a fraction (0.95); ``spec.level_percent`` for display."""
        return self.spec.level

    @property
    def measure(self) -> str | None:
        return self.spec.measure

    @property
    def rho(self) -> float | None:
        return self.spec.rho

    @property
    def rho_cluster(self) -> str | None:
        return self.spec.rho_cluster

    def refit(
        self, *, rows=None, design=None, start=None, warm: bool = True, **changes
    ) -> MetaResults:
        """The same model refitted with some settings changed: the one way analyses refit.

        ``changes`` are :class:`~mlmeta.spec.ModelSpec` fields (``sigma2``, ``method``,
        ``mods``, ``rho``, ``rho_cluster``, ``test``, ``dfs``, ``level`` as a fraction, ...);
        every setting not named is kept, ρ and fixed variance components included. ``rows``
        (boolean, one per used row) refits to a subset (leave-one-out); ``design=(X, names)``
        replaces the design matrix (e.g. Egger's test adds sqrt(vi)); a new ``mods`` formula is
        applied to the same rows. The refit is warm-started from this fit's variance components
        unless ``warm=False``; when only fixed variance components change, the sorted problem is
        reused, so a profile-likelihood step costs one likelihood optimisation.
        """
        from mlmeta.model import fit_prepared, prepare_spec

        spec = self.spec.replace(**changes) if changes else self.spec
        md = self.data
        if ("mods" in changes or "random" in changes) and design is None:
            md = prepare_spec(md.frame, spec, yi="_yi", vi="_vi")
        if rows is not None:
            from mlmeta.io.prepare import subset

            md = subset(md, np.asarray(rows, dtype=bool))
        if design is not None:
            from mlmeta.io.prepare import with_design

            md = with_design(md, design[0], design[1])
        same_problem = (
            md is self.data
            and spec.method == self.spec.method
            and spec.rho == self.spec.rho
            and spec.rho_cluster == self.spec.rho_cluster
        )
        if start is None and warm and len(self.core.sigma2) == len(md.random):
            start = self.core.sigma2
        return fit_prepared(
            md,
            spec,
            start=start,
            problem=self.core.problem if same_problem else None,
            same_as=self if same_problem else None,
        )

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
        return pd.Series(self.core.sigma2, index=list(self.level_names), name="sigma2", dtype=float)

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
        out = pd.DataFrame(
            {
                "estimate": self.core.beta,
                "se": t.se,
                ("tval" if self.test == "t" else "zval"): t.stat,
            },
            index=list(self.coef_names),
        )
        if t.df is not None:
            out["df"] = t.df
        out["pval"] = t.pval
        out["ci_lb"] = t.ci_lb
        out["ci_ub"] = t.ci_ub
        return out

    @property
    def variance_components(self) -> pd.DataFrame:
        """Table of the variance components (estimate, sqrt, number of levels, fixed)."""
        return pd.DataFrame(
            {
                "estimate": self.core.sigma2,
                "sqrt": np.sqrt(self.core.sigma2),
                "n_levels": self.n_levels,
                "fixed": self.core.fixed,
            },
            index=list(self.level_names),
        )

    @property
    def intercept_only(self) -> bool:
        return self.coef_names == ("intrcpt",)

    @property
    def converged(self) -> bool:
        return self.core.optim.converged

    def level_codes(self) -> list[np.ndarray]:
        """Group code (0..n-1) of every row at each level, in the data's row order."""
        if "level_codes" not in self._cache:
            st = self.core.problem.st
            inv = np.argsort(st.order)
            self._cache["level_codes"] = [c[inv] for c in st.codes]
        return self._cache["level_codes"]

    def cluster_codes(self, cluster: str | None = None) -> tuple[np.ndarray, list]:
        """Codes 0..C-1 and sorted labels of a cluster variable (default: the outer level)."""
        from mlmeta.errors import InputError

        if cluster is None:
            if not self.data.random:
                raise InputError(
                    "the model has no random effects, so no cluster level; give cluster="
                )
            labels = self.data.factors[0]
        elif cluster in self.data.random:
            labels = self.data.factors[self.data.random.index(cluster)]
            if self.data.random.index(cluster) > 0:
                # inner levels are combinations of the outer ids
                idx = self.data.random.index(cluster)
                labels = self.level_codes()[idx]
        elif cluster in self.data.frame.columns:
            labels = self.data.frame[cluster].to_numpy()
            if pd.isna(labels).any():
                raise InputError(f"cluster column {cluster!r} has missing values")
        else:
            raise InputError(f"cluster column {cluster!r} not found in the data")
        return id_codes(labels)

    def rho_codes(self) -> np.ndarray:
        """Cluster code of each row for the correlated sampling errors (CHE); see
        :func:`mlmeta.io.prepare.id_codes`."""
        if self.rho_cluster is None:
            raise ValueError("the model has no correlated sampling errors")
        if "rho_codes" not in self._cache:
            self._cache["rho_codes"] = id_codes(self.data.frame[self.rho_cluster].to_numpy())[0]
        return self._cache["rho_codes"]

    def marginal_blocks(self, codes: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Dense blocks (rows, V_c) of the marginal covariance for clusters ``codes``.

        V_c = diag(v_c) + sum_l sigma2_l [rows i, j share their level-l group]. Every group of
        the outer random level must lie inside one cluster, otherwise V is not block-diagonal by
        cluster.
        """
        from mlmeta.errors import InputError

        lc = self.level_codes()
        if lc:
            outer = lc[0]
            pairs = np.unique(np.column_stack([outer, codes]), axis=0)
            if len(pairs) != len(np.unique(outer)):
                raise InputError(
                    "the cluster variable cuts through groups of the outer random "
                    f"level {self.data.random[0]!r}; choose a cluster that "
                    "contains whole groups"
                )
        order = np.argsort(codes, kind="stable")
        starts = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1]])
        ends = np.r_[starts[1:], len(order)]
        s2 = self.core.sigma2
        rc = None
        if self.rho is not None:
            rc = self.rho_codes()
        out = []
        for a, b in zip(starts, ends):
            rows = order[a:b]
            if rc is None:
                Vc = np.diag(self.data.v[rows]).astype(float)
            else:
                from mlmeta.core.dense import constant_rho_blocks

                Vc = constant_rho_blocks(self.data.v, [rows], rc, float(self.spec.rho or 0.0))[0]
            for lv, c in enumerate(lc):
                cc = c[rows]
                Vc = Vc + s2[lv] * (cc[:, None] == cc[None, :])
            out.append((rows, Vc))
        return out

    # ------------------------------------------------------------------ analyses
    def diagnostics(self, *, profile: bool | None = None, robust=None):
        """Whether the fit can be trusted (see :mod:`mlmeta.analyses.diagnostics`).

        ``profile`` checks the shape of each component's profile likelihood (flat or several
        peaks) with 12 warm-started refits per component; by default it is done when refits
        are cheap: k <= 2,000 and k p^2 <= 512,000 (up to 16 coefficients at k = 2,000; a
        150-level factor on 600 rows would need refits of a second each). When the default
        skips it, a note says so. ``robust`` (a RobustResults) adds the few-clusters check.
        """
        from mlmeta.analyses.diagnostics import diagnose

        skipped = False
        if profile is None:
            cheap = self.k <= PROFILE_CHECK_MAX_K and self.k * max(self.p, 1) ** 2 <= 512_000
            profile = bool(self.data.random) and cheap
            skipped = bool(self.data.random) and not cheap
        key = ("diagnostics", profile, skipped, id(robust))
        if key not in self._cache:
            self._cache[key] = diagnose(
                self, profile=profile, robust=robust, profile_skipped=skipped
            )
        return self._cache[key]

    def i2(self):
        """Multilevel I^2 per level and total (see :func:`mlmeta.analyses.heterogeneity.i2`)."""
        from mlmeta.analyses.heterogeneity import i2

        return i2(self)

    def r2(self, kind: str = "proportional"):
        """R^2 of a moderator model: ``"proportional"`` (reduction of each sigma2 against the
        intercept-only model; what the report uses) or ``"marginal"`` (Nakagawa & Schielzeth's
        marginal and conditional R^2, orchaRd's ``r2_ml``); see
        :func:`mlmeta.analyses.heterogeneity.r2`."""
        from mlmeta.analyses.heterogeneity import r2

        return r2(self, kind=kind)

    def profile_ci(self, level: float = 95, **kw):
        """Profile-likelihood confidence intervals of the variance components."""
        from mlmeta.analyses.profile import profile_ci

        return profile_ci(self, level=level, **kw)

    def lrt_drop(self):
        """Likelihood-ratio test of each variance component against 0."""
        from mlmeta.analyses.lrt import lrt_drop

        return lrt_drop(self)

    def robust(self, cluster: str | None = None, type: str = "CR2", btt=None):
        """Cluster-robust inference (CR2 as clubSandwich, CR1 as metafor's robust)."""
        from mlmeta.analyses.robust import robust

        return robust(self, cluster=cluster, type=type, btt=btt)

    def wald(self, btt=None, X=None, *, rhs=None, vcov: str = "model", cluster=None):
        """Wald test of a set of coefficients (``btt``) or of linear combinations (``X``),
        model-based as metafor's ``anova`` or CR2 as clubSandwich's ``Wald_test``
        (see :func:`mlmeta.analyses.wald.wald`)."""
        from mlmeta.analyses.wald import wald

        return wald(self, btt=btt, X=X, rhs=rhs, vcov=vcov, cluster=cluster)

    def rstudent(self, cluster: str | None = None):
        """Externally studentized residuals (metafor's ``rstudent.rma.mv``; see
        :func:`mlmeta.analyses.influence.rstudent`)."""
        from mlmeta.analyses.influence import rstudent

        return rstudent(self, cluster=cluster)

    def dfbetas(self, cluster: str | None = None) -> pd.DataFrame:
        """DFBETAS per row or cluster (metafor's ``dfbetas.rma.mv``)."""
        from mlmeta.analyses.influence import dfbetas

        return dfbetas(self, cluster=cluster)

    def hatvalues(self) -> pd.Series:
        """Leverages, the diagonal of X (X'WX)^{-1} X'W (metafor's ``hatvalues.rma.mv``)."""
        from mlmeta.analyses.influence import hatvalues

        return hatvalues(self)

    def ranef(self) -> dict:
        """BLUPs of every random effect with se and prediction limits (metafor's
        ``ranef.rma.mv``; see :func:`mlmeta.analyses.ranef.ranef`)."""
        from mlmeta.analyses.ranef import ranef

        return ranef(self)

    def rstandard(self) -> pd.DataFrame:
        """Standardized marginal residuals (metafor's ``rstandard``)."""
        from mlmeta.analyses.influence import rstandard

        return rstandard(self)

    def loo_cluster(self, cluster: str | None = None) -> pd.DataFrame:
        """Leave-one-cluster-out refits."""
        from mlmeta.analyses.influence import loo_cluster

        return loo_cluster(self, cluster=cluster)

    def cooks_cluster(self, cluster: str | None = None) -> pd.DataFrame:
        """Cook's distance per cluster (metafor's ``cooks.distance(cluster=)``)."""
        from mlmeta.analyses.influence import cooks_cluster

        return cooks_cluster(self, cluster=cluster)

    def egger(self, robust: bool = False, predictor: str = "sei", n=None):
        """Multilevel Egger test: sqrt(vi) (or sqrt(1/n~), ``predictor="sqrt_inv_n"`` with the
        sample sizes ``n``) as an added moderator; see :func:`mlmeta.pubbias.egger.egger`."""
        from mlmeta.pubbias.egger import egger

        return egger(self, robust=robust, predictor=predictor, n=n)

    def aggregated_bias(self, rho: float = 0.5, **kw) -> dict:
        """Rank test, trim-and-fill and selection model on study-aggregated effects."""
        from mlmeta.pubbias import aggregated_bias

        return aggregated_bias(self, rho=rho, **kw)

    def weights(self) -> np.ndarray:
        """Weight of each effect size in the pooled estimate (row sums of W = V^{-1}), in %.

        For the intercept-only model beta = sum_i (W 1)_i y_i / 1'W1, so (W 1)_i / 1'W1 are the
        weights that exactly reproduce the estimate (they may be negative in rare cases).
        """
        if not self.data.random:
            w = 1.0 / self.data.v
        else:
            codes, _ = self.cluster_codes(None)
            w = np.empty(self.k)
            for rows, Vc in self.marginal_blocks(codes):
                w[rows] = np.linalg.solve(Vc, np.ones(len(rows)))
        return 100.0 * w / w.sum()

    # ------------------------------------------------------------------ predictions
    def predict(
        self,
        newmods=None,
        *,
        transf: str | None = None,
        level: float | None = None,
    ) -> Prediction:
        """Predicted effect for a row of moderator values (default: the intercept-only model).

        pred = x'b, se = sqrt(x' V_b x), CI = pred -+ crit se, PI = pred -+ crit
        sqrt(se^2 + sum sigma2) (metafor's ``predict.rma``; crit from z or t with the smallest
        df of the coefficients involved). ``transf="ztor"`` back-transforms Fisher z to r by tanh;
        ``transf="ztor_int"`` by metafor's ``transf.ztor.int`` with tau2 = sum(sigma2), which gives
        the mean r of the distribution of true effects (closer to 0 than tanh of the mean z).
        ``newmods`` is a DataFrame (columns as in the formula), a dict, or a design row.
        """
        from mlmeta.spec import to_fraction

        lv = self.level if level is None else to_fraction(level)
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

                raise InputError(
                    f"newmods has {Xn.shape[1]} columns but the model has "
                    f"{self.p} coefficients ({', '.join(self.coef_names)})"
                )
        b = self.core.beta
        V = self.core.vcov
        pred = Xn @ b
        se = np.sqrt(np.einsum("ij,jk,ik->i", Xn, V, Xn))
        tdf = self.tests.df
        if tdf is not None:
            df = np.array(
                [np.min(tdf[row != 0]) if np.any(row != 0) else self.k - self.p for row in Xn]
            )
            crit = t_isf((1 - lv) / 2, df)
        else:
            crit = np.full(len(pred), norm_isf((1 - lv) / 2))
        s2 = float(np.sum(self.core.sigma2))
        out = [
            pred,
            se,
            pred - crit * se,
            pred + crit * se,
            pred - crit * np.sqrt(se**2 + s2),
            pred + crit * np.sqrt(se**2 + s2),
        ]
        if transf is not None:
            if transf not in ("ztor", "tanh", "ztor_int"):
                from mlmeta.errors import InputError

                raise InputError(f"transf must be 'ztor' or 'ztor_int'; got {transf!r}")
            if transf == "ztor_int":
                # metafor's transf.ztor.int with tau2 = sum(sigma2): the mean of tanh over the
                # distribution of true effects, i.e. the mean r under heterogeneity
                from mlmeta.effects import ztor_int

                def f(x):
                    return np.asarray(ztor_int(np.asarray(x, dtype=float), s2), dtype=float)
            else:
                f = np.tanh
            pr, _, a, b_, c, d = out
            return Prediction(
                f(pr),
                np.full(len(pr), np.nan),
                f(a),
                f(b_),
                f(c),
                f(d),
                transformed=transf if transf != "tanh" else "ztor",
            )
        return Prediction(*out)

    # ------------------------------------------------------------------ output
    def to_dict(self, blocks: tuple[str, ...] = ()) -> dict[str, Any]:
        """All reported numbers under the keys of the reference cases' ``expect`` block.

        ``blocks`` adds optional blocks (I2, R2, profile_ci, lrt_drop, robust_cr2, robust_cr1,
        egger, loo_cluster, cooks_cluster, rstandard).
        """
        t = self.tests
        d: dict[str, Any] = {
            "k": self.k,
            "p": self.p,
            "n_levels": self.n_levels,
            "sigma2": [float(x) for x in self.core.sigma2],
            "beta": _fl(self.core.beta),
            "se": _fl(t.se),
            "stat": _fl(t.stat),
            "df": None if t.df is None else [_num(x) for x in t.df],
            "pval": _fl(t.pval),
            "ci_lb": _fl(t.ci_lb),
            "ci_ub": _fl(t.ci_ub),
            "vcov": [_fl(r) for r in self.core.vcov],
            "QE": self.QE,
            "QE_df": self.QE_df,
            "QEp": self.QEp,
            "QM": self.QM,
            "QM_df": [self.QM_df[0], _num(self.QM_df[1])],
            "QMp": self.QMp,
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
        d["diagnostics"] = self.diagnostics().to_dict()
        if blocks:
            from mlmeta.analyses.blocks import compute_blocks

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

    def _repr_html_(self) -> str:
        """Notebook display: the metafor-style summary and the coefficient table."""
        import html

        return f"<pre>{html.escape(self.summary())}</pre>" + self.coefs.to_html(
            float_format=lambda x: f"{x:.4f}"
        )

    def __repr__(self) -> str:
        return (
            f"<MetaResults k={self.k} p={self.p} method={self.method} "
            f"levels={'/'.join(self.data.random) or 'none'}>"
        )


def _num(x):
    if x is None:
        return None
    x = float(x)
    return int(x) if x.is_integer() else x


def _fl(a) -> list[float]:
    return [float(x) if math.isfinite(float(x)) else float("nan") for x in np.asarray(a).ravel()]

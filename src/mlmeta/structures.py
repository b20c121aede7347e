"""Fits and results of models with general random-effects structures (metafor's ``rma.mv``).

Crossed terms (``["~ 1 | study/es", "~ 1 | lab"]``), ``~ inner | outer`` terms with a ``struct``
(CS, HCS, UN, AR, HAR, ID, DIAG), known correlation matrices of a factor's levels (``R=``) and
known sampling covariances (``V=``, or ``rho=`` with ``rho_cluster=``) are fitted by
:func:`mlmeta.core.fit_general.fit_general`. The result, :class:`StructuredResults`, is a
:class:`~mlmeta.results.MetaResults` with metafor's extra quantities (``tau2``, ``rho`` for the
first ``~ inner | outer`` term, ``gamma2``, ``phi`` for the second) and these rules:

- tests, QM, QE and the ``dfs = "contain"`` degrees of freedom as metafor (the containment
  check runs over every ``~ 1 | ...`` factor and, per ``~ inner | outer`` term, over the
  inner-outer combinations and the outer factor);
- QE uses the sampling covariance only (``V`` or the ``rho`` blocks);
- predictions as metafor's ``predict.rma``: the prediction interval adds every ``sigma2`` and,
  for a single ``tau2``/``gamma2``, that too; with one ``tau2`` per inner level, an
  intercept-only model predicts once per level and ``newmods`` need ``tau2_levels``;
- robust inference needs a cluster within which every random effect and every correlated
  sampling error lies (``V`` block-diagonal by cluster, as clubSandwich requires): by default
  the outer factor that contains all the others; when the terms have no such factor, an
  explicit ``cluster=`` is required.

I² (the metafor FAQ's multilevel I², extended per inner level for ``~ inner | outer`` terms),
profile-likelihood CIs of every sigma2, tau2, rho, gamma2 and phi (metafor's ``confint``) and a
likelihood-ratio test per component or term (metafor's ``anova(full, reduced)``) are in
:mod:`mlmeta.analyses.profile_general`; profile-likelihood CIs of I² are not available yet (a
one-line error says so).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlmeta.core.dist import chi2_sf, norm_isf, t_isf
from mlmeta.core.fit_general import GeneralFit, contain_groupings, fit_general
from mlmeta.core.general import FactorTerm
from mlmeta.core.inference import coef_tests, contain_df, default_btt, fit_statistics, omnibus_test
from mlmeta.errors import FitWarning, InputError
from mlmeta.io.structures import StructuredData, subset_structured
from mlmeta.results import MetaResults, Prediction

__all__ = ["StructuredPrediction", "StructuredResults", "fit_structured"]

_NOT_YET = (
    "is not available yet for models with crossed or '~ inner | outer' random effects, "
    "R matrices or a known V"
)


@dataclass(frozen=True)
class StructuredPrediction(Prediction):
    """A :class:`~mlmeta.results.Prediction` with the inner levels whose tau2 (gamma2) entered
    the prediction interval (metafor's ``tau2.level``, ``gamma2.level``)."""

    tau2_level: tuple = field(default_factory=tuple)
    gamma2_level: tuple = field(default_factory=tuple)

    def to_frame(self) -> pd.DataFrame:
        out = super().to_frame()
        if self.tau2_level:
            out["tau2.level"] = list(self.tau2_level)
        if self.gamma2_level:
            out["gamma2.level"] = list(self.gamma2_level)
        return out


def fit_structured(md: StructuredData, spec, *, start=None, problem=None) -> StructuredResults:
    """Fit ``spec`` to prepared structured data (see the module docstring)."""
    k, p = md.X.shape
    if k <= p:
        raise InputError(f"{k} effect sizes are too few for {p} coefficients")
    assert md.S is not None  # prepare_structured always sets it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FitWarning)
        core = fit_general(
            md.y,
            md.X,
            md.S,
            list(md.terms),
            method=spec.method,
            sigma2=spec.sigma2,
            start=start,
            problem=problem,
        )
    for w in caught:
        warnings.warn(str(w.message), FitWarning, stacklevel=3)
    if spec.test == "t":
        if spec.dfs == "contain":
            codes, ng = contain_groupings(md.terms)
            ddf = contain_df(md.X, codes, ng)
        else:
            ddf = np.full(p, float(k - p))
    else:
        ddf = None
    ct = coef_tests(core.beta, core.vcov, ddf, spec.level)
    btt = default_btt(md.coef_names, md.formula.has_intercept)
    QM, QM_df, QMp = omnibus_test(core.beta, core.vcov, btt, ddf)
    qe, logdet_s = core.problem.sampling_qe()
    if k - p > 0:
        QE, QE_df, QEp = qe, k - p, float(chi2_sf(qe, k - p))
    else:
        QE, QE_df, QEp = 0.0, k - p, 1.0
    fs = fit_statistics(core.ll, spec.method, k, p, core.n_estimated, None, logdet_s)
    names = tuple(i.name for i in md.info if i.kind == "sigma2")
    return StructuredResults(
        data=md,
        core=core,
        spec=spec,
        level_names=names,
        tests=ct,
        btt=btt,
        QM=QM,
        QM_df=QM_df,
        QMp=QMp,
        QE=QE,
        QE_df=QE_df,
        QEp=QEp,
        fitstats=fs,
    )


@dataclass(frozen=True)
class StructuredResults(MetaResults):
    """A fitted model with general random-effects structures (see the module docstring)."""

    data: StructuredData
    core: GeneralFit  # type: ignore[assignment]

    is_structured = True  # the printout shows the tau^2/rho/gamma^2/phi tables

    # ------------------------------------------------------------------ components
    def _est(self):
        if "est" not in self._cache:
            self._cache["est"] = self.core.estimates()
        return self._cache["est"]

    def _io(self) -> list[tuple[Any, Any]]:
        """(estimate, info) of the ``~ inner | outer`` terms, in order."""
        est = self._est()
        return [(e, i) for e, i in zip(est, self.data.info) if i.kind == "inner_outer"]

    @property
    def sigma2(self) -> pd.Series:
        """Variance of each ``~ 1 | ...`` component, named as metafor's ``s.names``."""
        return pd.Series(
            [e.sigma2 for e in self._est() if e.kind == "sigma2"],
            index=list(self.level_names),
            name="sigma2",
            dtype=float,
        )

    @property
    def n_levels(self) -> list[int]:
        """Number of levels of each ``~ 1 | ...`` factor (metafor's ``s.nlevels``)."""
        return [e.n_levels[0] for e in self._est() if e.kind == "sigma2"]

    def _vc(self, j: int, which: str) -> pd.Series | None:
        io = self._io()
        if len(io) <= j:
            return None
        e, info = io[j]
        if which == "var":
            idx = (
                [str(x) for x in info.levels]
                if len(e.tau2) == len(info.levels) and len(e.tau2) > 1
                else ["tau2" if j == 0 else "gamma2"]
            )
            return pd.Series(e.tau2, index=idx, name="tau2" if j == 0 else "gamma2")
        if info.struct in ("ID", "DIAG"):
            return None
        if info.struct == "UN" and len(info.levels) > 1:
            lv = [str(x) for x in info.levels]
            idx = [f"{lv[a]}-{lv[b]}" for a in range(len(lv)) for b in range(a + 1, len(lv))]
        else:
            idx = ["rho" if j == 0 else "phi"]
        return pd.Series(e.rho, index=idx, name="rho" if j == 0 else "phi")

    @property
    def tau2(self) -> pd.Series | None:
        """Variances of the first ``~ inner | outer`` term (one per inner level for DIAG, HCS,
        HAR, UN), or None."""
        return self._vc(0, "var")

    @property
    def rho(self) -> pd.Series | None:  # type: ignore[override]
        """Correlations of the first ``~ inner | outer`` term (UN: ab, ac, bc, ...), or None."""
        return self._vc(0, "cor")

    @property
    def gamma2(self) -> pd.Series | None:
        return self._vc(1, "var")

    @property
    def phi(self) -> pd.Series | None:
        return self._vc(1, "cor")

    @property
    def variance_components(self) -> pd.DataFrame:
        """One row per estimated or fixed component: estimate, sqrt (variances), levels, fixed."""
        rows = []
        for e, info in zip(self._est(), self.data.info):
            if e.kind == "sigma2":
                rows.append(
                    (
                        f"sigma2[{info.name}]",
                        e.sigma2,
                        np.sqrt(e.sigma2),
                        e.n_levels[0],
                        bool(e.tau2_fixed[0]),
                    )
                )
                continue
            vn, rn = ("tau2", "rho") if info == self._io()[0][1] else ("gamma2", "phi")
            lv = [str(x) for x in info.levels]
            for a, t in enumerate(e.tau2):
                lab = f"{vn}[{lv[a]}]" if len(e.tau2) > 1 else vn
                rows.append((lab, t, np.sqrt(t), e.n_levels[1], bool(e.tau2_fixed[a])))
            if info.struct not in ("ID", "DIAG"):
                pairs = (
                    [f"{lv[a]}-{lv[b]}" for a in range(len(lv)) for b in range(a + 1, len(lv))]
                    if info.struct == "UN" and len(lv) > 1
                    else [""]
                )
                for j, r in enumerate(e.rho):
                    lab = f"{rn}[{pairs[j]}]" if pairs[j] else rn
                    rows.append((lab, r, np.nan, e.n_levels[1], bool(e.rho_fixed[j])))
        return pd.DataFrame(
            rows, columns=["component", "estimate", "sqrt", "n_levels", "fixed"]
        ).set_index("component")

    # ------------------------------------------------------------------ refits
    def refit(
        self, *, rows=None, design=None, start=None, warm: bool = True, **changes
    ) -> MetaResults:
        """The same model refitted with some settings changed (see
        :meth:`MetaResults.refit`); ``rows`` selects a subset of the used rows."""
        from mlmeta.model import fit_prepared, prepare_spec

        spec = self.spec.replace(**changes) if changes else self.spec
        md: Any = self.data
        if (
            "mods" in changes or "random" in changes or "rho" in changes or "rho_cluster" in changes
        ) and design is None:
            frame = md.frame.drop(columns=["_yi", "_vi", "_mlmeta_row"], errors="ignore")
            md = prepare_spec(frame.assign(_yi=md.y, _vi=md.v), spec, yi="_yi", vi="_vi")
        if rows is not None:
            md = subset_structured(md, np.asarray(rows, dtype=bool))
        if design is not None:
            from mlmeta.io.prepare import with_design

            md = with_design(md, design[0], design[1])
        if (
            start is None
            and warm
            and md is not self.data
            and len(self.core.theta) == sum(t.n_params for t in md.terms)
        ):
            start = self.core.theta
        same = md is self.data and spec.method == self.spec.method
        return fit_prepared(md, spec, start=start, problem=self.core.problem if same else None)

    # ------------------------------------------------------------------ clusters
    def default_cluster(self) -> str:
        """The outer factor that contains every random effect and correlated sampling error
        (the one with the most levels when several do); InputError when there is none."""
        comp = self._components()
        cands: list[str] = []
        for info in self.data.info:
            col = str(info.outer) if info.kind == "inner_outer" else info.name.split("/")[0]
            if col not in cands:
                cands.append(col)
        if self.spec.rho_cluster and self.spec.rho_cluster not in cands:
            cands.append(self.spec.rho_cluster)
        ok = []
        for c in cands:
            codes = self._column_codes(c)
            if self._nested(comp, codes):
                ok.append((len(np.unique(codes)), c))
        if not ok:
            raise InputError(
                f"random={self.spec.random_formulas!r} has no single outer factor that contains "
                "every random effect (the terms cross each other); give cluster= a column "
                "within which every random effect and correlated sampling error lies"
            )
        return max(ok)[1]

    def _components(self) -> np.ndarray:
        if "components" not in self._cache:
            self._cache["components"] = self.core.problem.covariance_components()
        return self._cache["components"]

    @staticmethod
    def _nested(comp: np.ndarray, codes: np.ndarray) -> bool:
        pairs = np.unique(np.column_stack([comp, codes]), axis=0)
        return len(pairs) == len(np.unique(comp))

    def _column_codes(self, col: str) -> np.ndarray:
        frame = self.data.frame
        if col not in frame.columns:
            raise InputError(f"cluster column {col!r} not found in the data")
        s = frame[col]
        if s.isna().any():
            raise InputError(f"cluster column {col!r} has missing values")
        _, codes = np.unique(s.astype(str).to_numpy(), return_inverse=True)
        return codes.ravel()

    def cluster_codes(self, cluster: str | None = None) -> tuple[np.ndarray, list]:
        """Codes 0..C-1 and sorted labels of a cluster column (default: :meth:`default_cluster`)."""
        col = self.default_cluster() if cluster is None else cluster
        frame = self.data.frame
        if col not in frame.columns:
            raise InputError(f"cluster column {col!r} not found in the data")
        labels = frame[col].to_numpy()
        if pd.isna(labels).any():
            raise InputError(f"cluster column {col!r} has missing values")
        uniq, codes = np.unique(
            labels.astype(str) if labels.dtype == object else labels, return_inverse=True
        )
        return codes.ravel(), [u.item() if hasattr(u, "item") else u for u in uniq]

    def marginal_blocks(self, codes: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Dense blocks ``(rows, V_c)`` of the fitted marginal covariance per cluster; refused
        when a random effect or a correlated sampling error crosses the clusters."""
        codes = np.asarray(codes, dtype=np.int64)
        if not self._nested(self._components(), codes):
            raise InputError(
                "the cluster variable cuts through random effects or correlated sampling errors "
                f"of random={self.spec.random_formulas!r} (V is not block-diagonal by cluster); "
                "choose a cluster that contains them"
            )
        return self.core.problem.marginal_blocks(self.core.theta, codes)

    def robust(self, cluster: str | None = None, type: str = "CR2", btt=None):
        """Cluster-robust inference with the fitted marginal covariance as working model;
        ``cluster`` defaults to :meth:`default_cluster`.

        When every random effect and correlated sampling error lies inside one cluster (V
        block-diagonal by cluster), CR2 is clubSandwich's and CR1 metafor's
        ``robust(adjust = TRUE)``. When the cluster cuts through them (e.g. labs crossed with
        studies), CR1 is still metafor's: with the full working weights ``W = V^{-1}``,
        ``V^CR1 = C/(C - p) M (sum_c (WX)_c' e_c e_c' (WX)_c) M``, t and F tests with
        ``C - p`` df; CR2 is refused there, as clubSandwich refuses it.
        """
        from mlmeta.analyses.robust import TYPES, robust

        t = str(type).upper()
        if t not in TYPES:
            raise InputError(f"type must be one of {', '.join(TYPES)}; got {type!r}")
        col = cluster or self.default_cluster()
        codes, labels = self.cluster_codes(col)
        if self._nested(self._components(), codes):
            return robust(self, cluster=col, type=t, btt=btt)
        if t == "CR2":
            raise InputError(
                f"CR2 needs every random effect and correlated sampling error inside one "
                f"cluster, and cluster {col!r} cuts through those of "
                f"random={self.spec.random_formulas!r}; use type='CR1' (metafor's robust() with "
                "the full working weights) or a cluster that contains them"
            )
        return self._robust_cr1_full(col, codes, len(labels), btt)

    def _robust_cr1_full(self, col: str, codes: np.ndarray, C: int, btt=None):
        """CR1 with the full working weights (see :meth:`robust`)."""
        from mlmeta.analyses.robust import RobustResults
        from mlmeta.core.dist import f_sf, t_sf

        X, y, b = self.data.X, self.data.y, self.core.beta
        p = X.shape[1]
        if C <= p:
            raise InputError(
                f"robust inference needs more clusters than coefficients: {C} "
                f"clusters for {p} coefficients"
            )
        e = y - X @ b
        WX = self.core.problem.marginal_inverse_apply(self.core.theta, X).reshape(len(y), p)
        u = np.zeros((C, p))
        np.add.at(u, codes, WX * e[:, None])
        M = self.core.vcov
        vcov = C / (C - p) * (M @ (u.T @ u) @ M)
        vcov = 0.5 * (vcov + vcov.T)
        dfr = float(C - p)
        se = np.sqrt(np.diag(vcov))
        stat = b / se
        crit = t_isf((1 - self.level) / 2, dfr)
        names = list(self.coef_names)
        if btt is None:
            sel = np.asarray(self.btt, dtype=int)
        else:
            sel = np.array(
                sorted(
                    {
                        names.index(x) if isinstance(x, str) else int(x)
                        for x in ([btt] if isinstance(btt, (str, int)) else btt)
                    }
                ),
                dtype=int,
            )
        m = len(sel)
        bb = b[sel]
        QM = float(bb @ np.linalg.solve(vcov[np.ix_(sel, sel)], bb)) / m
        coefs = pd.DataFrame(
            {
                "estimate": b,
                "se": se,
                "tval": stat,
                "df": np.full(p, dfr),
                "pval": 2.0 * t_sf(np.abs(stat), dfr),
                "ci_lb": b - crit * se,
                "ci_ub": b + crit * se,
            },
            index=names,
        )
        return RobustResults(
            "CR1",
            col,
            C,
            coefs,
            pd.DataFrame(vcov, index=names, columns=names),
            QM,
            (m, dfr),
            float(f_sf(QM, m, dfr)),
        )

    def weights(self) -> np.ndarray:
        """Weight of each effect size in the pooled estimate, in % (row sums of V^{-1})."""
        w = self.core.problem.marginal_inverse_apply(self.core.theta, np.ones(self.k))
        return 100.0 * w / w.sum()

    def rstandard(self) -> pd.DataFrame:
        """Standardized marginal residuals: (y - Xb) / sqrt(diag(V - X vb X'))."""
        X = self.data.X
        r = self.data.y - X @ self.core.beta
        var = self.core.problem.marginal_diag(self.core.theta) - np.einsum(
            "ij,jk,ik->i", X, self.core.vcov, X
        )
        se = np.sqrt(np.maximum(var, 0.0))
        z = r / se
        return pd.DataFrame(
            {"resid": r, "se": se, "z": z, "outlier": np.abs(z) > 1.959963984540054},
            index=self.data.frame.index,
        )

    # ------------------------------------------------------------------ not yet available
    def i2(self, ci: bool = False, level: float = 95):
        """Multilevel I^2 (percentages). Without ``~ inner | outer`` terms, the metafor FAQ's
        ``100 sigma2_l / (sum sigma2 + typical v)`` per ``~ 1 | ...`` component (crossed factors
        and R matrices included), typical v = ``(k - p) / tr(P)``, ``P = W - W X (X'WX)^{-1}
        X'W``, ``W`` the inverse sampling covariance; with them, its extension with one row per
        tau2/gamma2 (per inner level for HCS, HAR, DIAG, UN), see
        :func:`mlmeta.analyses.profile_general.i2_structured`. ``ci=True`` is not available."""
        from mlmeta.analyses.heterogeneity import I2Result, typical_v

        if ci:
            raise InputError(f"profile-likelihood CIs of I2 {_NOT_YET}")
        if self._io():
            from mlmeta.analyses.profile_general import i2_structured

            return i2_structured(self)
        if not self.level_names:
            raise InputError("I2 needs random effects; the equal-effects model has none")
        pr = self.core.problem
        blocks = [(rows, Sb) for b in pr.batches for rows, Sb in zip(b.rows, b.S)]
        tv = typical_v(self.data.v, self.data.X, blocks)
        s2 = self.sigma2.to_numpy()
        den = float(np.sum(s2)) + tv
        levels = pd.Series(100.0 * s2 / den, index=list(self.level_names), name="I2")
        return I2Result(100.0 * float(np.sum(s2)) / den, levels, tv, None)

    def r2(self, kind: str = "proportional"):
        """R^2 of a moderator model over every variance component (sigma2, tau2, gamma2):
        ``"proportional"`` (reduction against the intercept-only model on the same rows; a
        tau2 per inner level enters the total as the mean over the inner levels) or
        ``"marginal"`` (Nakagawa & Schielzeth's marginal and conditional R^2); see
        :func:`mlmeta.analyses.heterogeneity.r2`."""
        from mlmeta.analyses.heterogeneity import r2

        return r2(self, kind=kind)

    def profile_ci(self, level: float = 95, **kw):
        """Profile-likelihood CIs of every estimated sigma2, tau2, rho, gamma2, phi as metafor's
        ``confint(fit, sigma2 = j)`` etc.: bounds where ``2 (ll_max - ll_p) =
        qchisq(level, 1)``; see :func:`mlmeta.analyses.profile_general.profile_ci_structured`
        (``components=`` row positions or labels)."""
        from mlmeta.analyses.profile_general import profile_ci_structured

        return profile_ci_structured(self, level=level, **kw)

    def lrt_drop(self):
        """Likelihood-ratio test of each ``~ 1 | ...`` component against 0 (refit with it fixed
        at 0) and, with ``~ inner | outer`` terms, of each such term against the model without
        it (df = its estimated parameters; the 50:50 mixture p-value only for one variance);
        see :func:`mlmeta.analyses.profile_general.lrt_drop_structured`."""
        if self._io():
            from mlmeta.analyses.profile_general import lrt_drop_structured

            return lrt_drop_structured(self)
        from mlmeta.analyses.lrt import lrt_drop

        return lrt_drop(self)

    def egger(
        self, robust: bool = False, predictor: str = "se", n=None, cluster: str | None = None
    ):
        """Multilevel Egger test: sqrt(vi) (or sqrt(1/n~)) added as a moderator to this model,
        model-based and, with ``robust=True``, CR2 by ``cluster`` (default
        :meth:`default_cluster`); see :func:`mlmeta.pubbias.egger.egger`."""
        from mlmeta.pubbias.egger import egger

        return egger(self, robust=robust, predictor=predictor, n=n, cluster=cluster)

    def aggregated_bias(self, rho: float = 0.5, **kw) -> dict:
        """Rank test, trim-and-fill, selection model and Egger's regression on effects
        aggregated within ``cluster=`` (default :meth:`default_cluster`); see
        :func:`mlmeta.pubbias.aggregated.aggregated_bias`."""
        from mlmeta.pubbias.aggregated import aggregated_bias

        return aggregated_bias(self, rho=rho, **kw)

    def diagnostics(self, *, profile: bool | None = None, robust=None):
        """Convergence, components on the boundary (variances 0, correlations +-1), the spread
        of the sampling variances and, with ``robust``, few clusters."""
        key = ("diagnostics", id(robust))
        if key in self._cache:
            return self._cache[key]
        from mlmeta.analyses.diagnostics import VI_RATIO_LIMIT, Diagnostics

        opt = self.core.optim
        warns: list[str] = []
        notes: list[str] = []
        if not opt.converged:
            warns.append("the optimiser did not converge")
        boundary = []
        vc = self.variance_components
        for name, row in vc.iterrows():
            if row["fixed"]:
                continue
            if np.isnan(row["sqrt"]):
                if abs(row["estimate"]) >= 1.0:
                    boundary.append(str(name))
                    warns.append(
                        f"correlation {name} is estimated at the boundary {row['estimate']:+g}"
                    )
            elif row["estimate"] == 0:
                boundary.append(str(name))
                warns.append(f"variance component {name} is estimated at the boundary 0")
        # a UN correlation matrix estimated singular: the boundary of its parameter space
        for e, info in self._io():
            if info.struct != "UN" or len(info.levels) < 3:
                continue  # two levels: singular only at rho = +-1, said above
            m = len(info.levels)
            R = np.eye(m)
            for r, (a, b) in zip(e.rho, [(i, j) for i in range(m) for j in range(i + 1, m)]):
                R[a, b] = R[b, a] = r
            if float(np.linalg.eigvalsh(R)[0]) < 1e-8:
                term = f"~ {info.inner} | {info.outer}"
                boundary.append(term)
                warns.append(
                    f"the correlation matrix of {term} is estimated singular (the boundary of "
                    "its parameter space: the random effects of its levels are linearly "
                    "dependent)"
                )
        S = self.data.S
        assert S is not None
        v = S.diag
        ratio = float(np.max(v) / np.min(v))
        if ratio > VI_RATIO_LIMIT:
            warns.append(
                f"sampling variances span a ratio of {ratio:.3g} (largest/smallest): a "
                "few effect sizes dominate the weights"
            )
        if robust is not None:
            df = np.asarray(robust.coefs["df"], dtype=float)
            if np.any(df < 4):
                bad = [n for n, d in zip(robust.coefs.index, df) if d < 4]
                warns.append(
                    f"few clusters for robust inference: Satterthwaite df < 4 for {', '.join(bad)}"
                )
        if self.data.dropped:
            notes.append(
                f"{len(self.data.dropped)} of {self.data.k_all} rows dropped for missing values"
            )
        out = Diagnostics(
            opt.converged,
            opt.iterations,
            opt.grad_norm,
            opt.method,
            tuple(boundary),
            (),
            ratio,
            tuple(warns),
            tuple(notes),
        )
        self._cache[key] = out
        return out

    # ------------------------------------------------------------------ predictions
    def predict(
        self,
        newmods=None,
        *,
        transf: str | None = None,
        level: float | None = None,
        tau2_levels=None,
        gamma2_levels=None,
    ) -> StructuredPrediction:
        """Predicted effects with CI and PI as metafor's ``predict.rma`` (see the module
        docstring). ``tau2_levels``/``gamma2_levels`` name (or number, from 1) the inner level
        whose variance enters each prediction interval."""
        from mlmeta.spec import to_fraction

        lv = self.level if level is None else to_fraction(level)
        Xn: np.ndarray
        io = self._io()
        n_t = [len(e.tau2) for e, _ in io]
        t_lv: list = []
        g_lv: list = []
        if newmods is None:
            if self.intercept_only:
                if not io:
                    Xn = np.ones((1, 1))
                elif len(io) == 1:
                    t_lv = list(io[0][1].levels) if n_t[0] > 1 else [None]
                    Xn = np.ones((len(t_lv), 1))
                else:
                    la = list(io[0][1].levels) if n_t[0] > 1 else [None]
                    lb = list(io[1][1].levels) if n_t[1] > 1 else [None]
                    t_lv = [x for x in la for _ in lb]
                    g_lv = [y for _ in la for y in lb]
                    Xn = np.ones((len(t_lv), 1))
            else:
                Xn = self.data.X
                for j, (_, info) in enumerate(io):
                    col = self.data.frame[info.inner].to_numpy()
                    (t_lv if j == 0 else g_lv).extend(col.tolist())
        else:
            if isinstance(newmods, (pd.DataFrame, dict)):
                nd = pd.DataFrame(newmods) if isinstance(newmods, dict) else newmods
                Xn = self.data.formula.design(nd)
            else:
                Xn = np.atleast_2d(np.asarray(newmods, dtype=float))
                if Xn.shape[1] != self.p:
                    raise InputError(
                        f"newmods has {Xn.shape[1]} columns but the model has "
                        f"{self.p} coefficients ({', '.join(self.coef_names)})"
                    )
            for j, given in enumerate((tau2_levels, gamma2_levels)):
                if j < len(io) and given is not None:
                    g = list(np.atleast_1d(np.asarray(given, dtype=object)))
                    if len(g) == 1:
                        g = g * len(Xn)
                    if len(g) != len(Xn):
                        raise InputError(
                            f"{'tau2' if j == 0 else 'gamma2'}_levels has {len(g)} "
                            f"entries for {len(Xn)} predictions"
                        )
                    (t_lv if j == 0 else g_lv).extend(g)
        b, V = self.core.beta, self.core.vcov
        pred = Xn @ b
        se = np.sqrt(np.einsum("ij,jk,ik->i", Xn, V, Xn))
        if self.test == "t":
            tdf = np.asarray(self.tests.df, dtype=float)
            df = np.array(
                [np.min(tdf[row != 0]) if np.any(row != 0) else self.k - self.p for row in Xn]
            )
            crit = t_isf((1 - lv) / 2, df)
        else:
            crit = np.full(len(pred), norm_isf((1 - lv) / 2))
        extra = np.full(len(pred), float(np.sum(self.sigma2)))
        for j, (e, info) in enumerate(io):
            chosen = t_lv if j == 0 else g_lv
            if n_t[j] == 1:
                extra += e.tau2[0]
                continue
            if not chosen:
                extra[:] = np.nan
                continue
            for i, x in enumerate(chosen):
                extra[i] += e.tau2[self._level_pos(info, x, "tau2" if j == 0 else "gamma2")]
        tot = np.sqrt(se**2 + extra)
        out = [pred, se, pred - crit * se, pred + crit * se, pred - crit * tot, pred + crit * tot]
        tl = (
            tuple(None if x is None else x for x in t_lv)
            if any(x is not None for x in t_lv)
            else ()
        )
        gl = tuple(g_lv) if any(x is not None for x in g_lv) else ()
        if transf is not None:
            if transf not in ("ztor", "tanh", "ztor_int"):
                raise InputError(f"transf must be 'ztor' or 'ztor_int'; got {transf!r}")
            if transf == "ztor_int":
                from mlmeta.effects import ztor_int

                vals = [
                    np.asarray([ztor_int(np.asarray([x]), float(s2))[0] for x, s2 in zip(o, extra)])
                    for o in out
                ]
            else:
                vals = [np.tanh(o) for o in out]
            return StructuredPrediction(
                pred=vals[0],
                se=np.full(len(pred), np.nan),
                ci_lb=vals[2],
                ci_ub=vals[3],
                pi_lb=vals[4],
                pi_ub=vals[5],
                transformed="ztor" if transf == "tanh" else transf,
                tau2_level=tl,
                gamma2_level=gl,
            )
        return StructuredPrediction(
            pred=out[0],
            se=out[1],
            ci_lb=out[2],
            ci_ub=out[3],
            pi_lb=out[4],
            pi_ub=out[5],
            tau2_level=tl,
            gamma2_level=gl,
        )

    @staticmethod
    def _level_pos(info, x, what: str) -> int:
        levels = list(info.levels)
        if (
            isinstance(x, (int, np.integer))
            and not isinstance(x, bool)
            and x not in levels
            and 1 <= int(x) <= len(levels)
        ):
            return int(x) - 1
        for i, lvl in enumerate(levels):
            if str(lvl) == str(x) or lvl == x:
                return i
        raise InputError(
            f"{what}_levels: {x!r} is not a level of {info.inner!r} "
            f"({', '.join(str(v) for v in levels)})"
        )

    # ------------------------------------------------------------------ output
    def to_dict(self, blocks: tuple[str, ...] = ()) -> dict[str, Any]:
        """The reported numbers under the keys of the reference cases (metafor's names)."""
        d = super().to_dict(blocks=())
        d["sigma2"] = [float(x) for x in self.sigma2]
        if any(i.kind == "inner_outer" for i in self.data.info):
            d.pop("n_levels", None)
        for j, (vn, rn) in enumerate((("tau2", "rho"), ("gamma2", "phi"))):
            s = self._vc(j, "var")
            if s is not None:
                d[vn] = [float(x) for x in s]
                r = self._vc(j, "cor")
                if r is not None:
                    d[rn] = [float(x) for x in r]
        d["random"] = self.spec.random_formulas
        d["struct"] = [i.struct for i in self.data.info if i.kind == "inner_outer"] or None
        d["level_names"] = list(self.level_names)
        if "predict" in d or self.intercept_only:
            pr = self.predict()
            d["predict"] = (
                pr.to_dict() if len(pr.pred) == 1 else [pr.to_dict(i) for i in range(len(pr.pred))]
            )
            if self.measure == "ZCOR":
                pz = self.predict(transf="ztor")
                d["predict_r"] = (
                    pz.to_dict()
                    if len(pz.pred) == 1
                    else [pz.to_dict(i) for i in range(len(pz.pred))]
                )
        if blocks:
            from mlmeta.analyses.blocks import compute_blocks

            d.update(compute_blocks(self, blocks))
        return d

    def summary(self, digits: int = 4) -> str:
        """metafor-style printout (``print.rma.mv``) with the tau^2/rho/gamma^2/phi tables."""
        from mlmeta.printing import format_summary

        return format_summary(self, digits)

    def __repr__(self) -> str:
        return (
            f"<StructuredResults k={self.k} p={self.p} method={self.method} "
            f"random={self.spec.random_formulas}>"
        )


def k_per_level(term_inner: np.ndarray, m: int) -> np.ndarray:
    """Rows per inner level (metafor's ``g.levels.k``)."""
    return np.bincount(term_inner, minlength=m)


def co_occurrence(term) -> np.ndarray:
    """Number of outer groups in which each pair of inner levels occurs together."""
    occ = np.zeros((term.n_outer, term.cov.m))
    occ[term.outer, term.inner] = 1.0
    return occ.T @ occ


def is_factor_term(t) -> bool:
    return isinstance(t, FactorTerm)

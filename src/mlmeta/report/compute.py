"""Every number of the report, computed once from an :class:`~mlmeta.io.analysis.AnalysisSpec`.

:func:`compute` returns a :class:`Computed`: ``numbers`` (a JSON-ready dict, written as
results.json and the only source the HTML and Markdown renderers read) and ``objects`` (the
fitted models, for the figures). Each section is timed (``numbers["timings"]``) and the
library's warnings raised in it are collected with the section's name.

Scale: when the effect sizes are Fisher-z correlations (measure ZCOR) every estimate and
interval is reported back-transformed to r = tanh(z); the SE of r comes from the delta method,
se_r = (1 - tanh(z)^2) se_z; log odds ratios (measure OR) are reported as odds ratios
OR = exp(log OR) with their CI limits exponentiated (no SE: it belongs to the log scale); test
statistics, df and p-values are those of the model scale.

Every estimate of the model scale is stored under a key the mirror test knows (estimate, beta,
ci_lb/ci_ub, ...): replacing yi by -yi flips each estimate's sign and swaps each interval's
limits while every p-value stays (tests/test_report_mirror.py).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlmeta.errors import InputError, MlmetaError, MlmetaWarning
from mlmeta.io.analysis import AnalysisSpec, LoadedData, load_data
from mlmeta.report import fmt
from mlmeta.spec import to_fraction

__all__ = ["Computed", "Scale", "compute"]


# ---------------------------------------------------------------- scale
@dataclass(frozen=True)
class Scale:
    """How model-scale numbers are shown: ``r`` for Fisher z, else as they are."""

    label: str
    transform: bool  # Fisher z -> r
    bounded: bool  # |value| <= 1: APA drops the leading zero
    measure: str | None
    exp: bool = False  # log odds ratio -> odds ratio

    def tr(self, x):
        if x is None:
            return None
        x = float(x)
        if not math.isfinite(x):
            return x
        if self.exp:
            return math.exp(x) if x < 700 else math.inf
        return math.tanh(x) if self.transform else x

    def se(self, est, se):
        if se is None or not math.isfinite(float(se)) or self.exp:
            return None
        if self.transform:
            return (1.0 - math.tanh(float(est)) ** 2) * float(se)
        return float(se)


def _scale(spec: AnalysisSpec) -> Scale:
    m = spec.measure
    label = spec.effect_label
    if m == "OR" and not spec.label:
        label = "OR"  # reported back-transformed, as r is from Fisher z
    return Scale(
        label=label,
        transform=(m == "ZCOR"),
        bounded=m in ("ZCOR", "COR"),
        measure=m,
        exp=(m == "OR"),
    )


# ---------------------------------------------------------------- helpers
def _f(x):
    """JSON-friendly float (NaN/inf -> None)."""
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _py(x):
    if isinstance(x, (np.generic,)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return [_jsonable(v) for v in o.tolist()]
    if isinstance(o, pd.DataFrame):
        return [_jsonable(r) for r in o.to_dict(orient="records")]
    if isinstance(o, pd.Series):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (np.bool_, bool)):
        return bool(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return _f(o)
    return o


@dataclass
class Computed:
    numbers: dict
    objects: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)


class _Context:
    def __init__(self, spec: AnalysisSpec, progress):
        self.spec = spec
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.warnings: list[dict] = []
        self.other_warnings: list[str] = []

    @contextmanager
    def section(self, name: str, label: str | None = None):
        """Time a step (timings add up under ``name``) and collect its warnings (labelled
        ``label`` or ``name``)."""
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0
                for w in rec:
                    msg = str(w.message).splitlines()[0] if str(w.message) else ""
                    if issubclass(w.category, MlmetaWarning):
                        item = {
                            "section": label or name,
                            "category": w.category.__name__,
                            "message": msg,
                        }
                        if item not in self.warnings:
                            self.warnings.append(item)
                    elif msg not in self.other_warnings:
                        self.other_warnings.append(f"{w.category.__name__}: {msg}")

    def note_failure(self, section: str, what: str, exc: Exception) -> dict:
        """An optional analysis that failed: the reason goes into the report's notes (and the
        section's ``reason``) instead of taking the whole report down."""
        import os

        if os.environ.get("MLMETA_DEBUG"):
            import traceback

            traceback.print_exception(exc)
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not isinstance(exc, MlmetaError):  # a numerical failure (singular matrix, overflow)
            msg = f"{type(exc).__name__}: {msg}"
        item = {"section": section, "category": "NotAvailable", "message": f"{what}: {msg}"}
        self.warnings.append(item)
        return {"available": False, "reason": msg}


def _fit(spec: AnalysisSpec, ld: LoadedData, mods: str | None, data=None):
    from mlmeta.model import fit_spec

    return fit_spec(ld.frame if data is None else data, spec.model_spec(ld.yi, ld.vi, mods))


def _rob_cluster(spec: AnalysisSpec, res) -> str | None:
    """Cluster of the CR2 inference: model.cluster, else the model's default (None: the outer
    level, or for a structured model the factor that contains every random effect), else, for
    an equal-effects model, data.study."""
    if spec.cluster:
        return spec.cluster
    return None if (res.data.random or getattr(res, "is_structured", False)) else spec.study


def _robust_blocker(spec: AnalysisSpec, res) -> str | None:
    """Why CR2 cannot be computed for ``res`` at all (None when it can): no cluster for an
    equal-effects model, or a structured model whose terms cross each other when the analysis
    file names no model.cluster. Decided once per model, so that the report states it once
    (in the robust section) instead of once per analysis."""
    if not (
        res.data.random
        or getattr(res, "is_structured", False)
        or _rob_cluster(spec, res) is not None
    ):
        return "no cluster level (equal-effects model); set model.cluster or data.study"
    if getattr(res, "is_structured", False) and spec.cluster is None:
        try:
            res.default_cluster()
        except InputError as exc:
            return str(exc).replace("give cluster= a column", "set model.cluster to a column")
    return None


def _can_robust(spec: AnalysisSpec, res) -> bool:
    return bool(spec.analyses["robust"]) and _robust_blocker(spec, res) is None


def _stat_name(res) -> str:
    return "t" if res.test == "t" else "z"


def _coef_rows(res, rob=None) -> list[dict]:
    c = res.coefs
    statcol = "tval" if res.test == "t" else "zval"
    rows = []
    for j, name in enumerate(res.coef_names):
        r = {
            "name": name,
            "estimate": _f(c["estimate"].iloc[j]),
            "se": _f(c["se"].iloc[j]),
            "stat": _f(c[statcol].iloc[j]),
            "df": _f(c["df"].iloc[j]) if "df" in c.columns else None,
            "pval": _f(c["pval"].iloc[j]),
            "ci_lb": _f(c["ci_lb"].iloc[j]),
            "ci_ub": _f(c["ci_ub"].iloc[j]),
        }
        if rob is not None:
            rc = rob.coefs
            r["robust"] = {
                "se": _f(rc["se"].iloc[j]),
                "stat": _f(rc["tval"].iloc[j]),
                "df": _f(rc["df"].iloc[j]),
                "pval": _f(rc["pval"].iloc[j]),
                "ci_lb": _f(rc["ci_lb"].iloc[j]),
                "ci_ub": _f(rc["ci_ub"].iloc[j]),
            }
        rows.append(r)
    return rows


def _model_dict(res) -> dict:
    """The numbers of a fit under the keys of ``res.to_dict()`` (the reference cases' keys),
    with the quick fit diagnostics only: the profile-shape check (about 30 refits per variance
    component) is run once, for the overall model (``numbers["diagnostics"]``)."""
    t = res.tests
    d: dict[str, Any] = {
        "k": res.k,
        "p": res.p,
        "n_levels": [int(x) for x in res.n_levels],
        "sigma2": [float(x) for x in res.core.sigma2],
        "beta": [float(x) for x in res.core.beta],
        "se": [float(x) for x in t.se],
        "stat": [float(x) for x in t.stat],
        "df": None if t.df is None else [_py(x) for x in t.df],
        "pval": [float(x) for x in t.pval],
        "ci_lb": [float(x) for x in t.ci_lb],
        "ci_ub": [float(x) for x in t.ci_ub],
        "QE": res.QE,
        "QE_df": res.QE_df,
        "QEp": res.QEp,
        "QM": res.QM,
        "QM_df": [res.QM_df[0], _py(res.QM_df[1])],
        "QMp": res.QMp,
    }
    d.update(res.fitstats)
    if res.intercept_only:
        d["predict"] = res.predict().to_dict()
        if res.measure == "ZCOR":
            d["predict_r"] = res.predict(transf="ztor").to_dict()
    d["coef_names"] = list(res.coef_names)
    d["level_names"] = list(res.level_names)
    d["method"], d["test"], d["dfs"] = res.method, res.test, res.dfs
    d["k_all"] = res.data.k_all
    d["rows_dropped"] = len(res.data.dropped)
    d["converged"] = res.converged
    d["diagnostics"] = res.diagnostics(profile=False).to_dict()
    return d


def _omnibus(res) -> dict:
    df1, df2 = res.QM_df
    name = "F" if res.test == "t" else "QM"
    return {
        "stat_name": name,
        "stat": _f(res.QM),
        "df1": int(df1),
        "df2": _f(df2),
        "pval": _f(res.QMp),
        "apa": _omnibus_text(name, res.QM, df1, df2, res.QMp),
    }


def _omnibus_text(name, stat, df1, df2, p) -> str:
    if name == "F":
        return f"F({fmt.df_text(df1)}, {fmt.df_text(df2)}) = {fmt.num(stat, 3)}, {fmt.p_text(p)}"
    return f"QM({fmt.df_text(df1)}) = {fmt.num(stat, 3)}, {fmt.p_text(p)}"


#: Satterthwaite df below this: the small-sample test is unreliable (Tipton & Pustejovsky 2015)
SMALL_DF = 4.0


def df_status(df) -> str:
    """ "ok", "small" (1 <= df < 4: unreliable) or "undefined" (df < 1, not finite or None)."""
    if df is None or not math.isfinite(float(df)) or float(df) < 1.0:
        return "undefined"
    return "small" if float(df) < SMALL_DF else "ok"


def _robust_omnibus(rob) -> dict:
    df1, df2 = rob.QM_df
    status = df_status(df2)
    if not (rob.QM is not None and math.isfinite(float(rob.QM)) and float(rob.QM) >= 0):
        status = "undefined"
    d = {
        "stat_name": "F",
        "stat": _f(rob.QM),
        "df1": int(df1),
        "df2": _f(df2),
        "pval": _f(rob.QMp),
        "type": rob.type,
        "cluster": rob.cluster,
        "n_clusters": rob.n_clusters,
        "df_status": status,
    }
    if status == "undefined":  # results.json keeps the number; the text does not use it
        d["apa"] = None
        d["why_undefined"] = (
            f"the Satterthwaite denominator df ({fmt.df_text(df2)}) is below 1"
            if _f(df2) is not None
            else "the Satterthwaite denominator df cannot be computed"
        )
    else:
        d["apa"] = _omnibus_text("F", rob.QM, df1, df2, rob.QMp)
    return d


# ---------------------------------------------------------------- main entry
def compute(spec: AnalysisSpec, progress=None, figures_hook: Callable | None = None) -> Computed:
    """All numbers of the report. ``figures_hook(objects)`` is called as soon as the models
    the figures need are fitted (the figures can then be drawn while the rest is computed)."""
    from mlmeta.report.progress import Progress

    ctx = _Context(spec, progress or Progress(False))
    sc = _scale(spec)
    out: dict[str, Any] = {}
    obj: dict[str, Any] = {"scale": sc, "spec": spec}

    with ctx.section("data"):
        ld = load_data(spec)
        obj["loaded"] = ld

    with ctx.section("overall model"):
        res = _fit(spec, ld, None)
        obj["res"] = res
        out["overall"] = _overall(spec, res, sc)
        out["data"] = _data_summary(spec, ld, res)

    out["moderators"] = _moderators(ctx, spec, ld, res, sc, obj)
    with ctx.section("moderators", "joint moderator model"):
        out["joint"] = _joint(ctx, spec, ld, obj) if spec.joint else None

    # the figures need the fitted models: they are drawn (in worker processes when possible)
    # while the rest is computed; the leave-one-out figure, drawn last, uses this process's
    # refits when it is drawn here (a worker refits on its own)
    if figures_hook is not None:
        with ctx.section("figures (start)"):
            figures_hook(obj)

    # optional analyses: one that fails is noted in the report, never fatal
    def guarded(section: str, what: str, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001
            return ctx.note_failure(section, what, exc)

    out["heterogeneity"] = guarded(
        "heterogeneity", "heterogeneity statistics", _heterogeneity, ctx, spec, res
    )

    with ctx.section("robust"):
        out["robust"] = (
            guarded("robust", "CR2 robust inference", _robust_overall, ctx, spec, res, sc, obj)
            if spec.analyses["robust"]
            else None
        )

    out["inference"] = _inference(spec, out, res)
    out["studies"] = guarded("studies", "table of included studies", _studies, spec, ld, res)

    out["sensitivity"] = guarded(
        "sensitivity", "sensitivity analyses", _sensitivity, ctx, spec, res, sc, obj
    )

    with ctx.section("publication bias"):
        out["bias"] = (
            guarded("publication bias", "publication-bias analyses", _bias, ctx, spec, res, sc, ld)
            if spec.analyses["bias"]
            else None
        )

    out["che_sweep"] = (
        guarded("CHE sweep", "CHE sensitivity analysis", _che_sweep, ctx, spec, res, sc)
        if spec.analyses["che_sweep"]
        else None
    )

    with ctx.section("power"):
        out["power"] = (
            guarded("power", "power analysis", _power, spec, res)
            if spec.power is not None
            else None
        )

    with ctx.section("diagnostics"):
        # the full check: profile shape (flat / several peaks) and the robust df as well
        try:
            d = res.diagnostics(
                profile=bool(spec.analyses["profile"] and res.data.random), robust=obj.get("robust")
            )
            out["diagnostics"] = {**d.to_dict(), "verdict": d.verdict}
        except Exception as exc:  # noqa: BLE001
            why = ctx.note_failure("diagnostics", "fit diagnostics", exc)
            out["diagnostics"] = {
                "notes": [],
                **why,
                "verdict": f"the diagnostics could not be computed ({why['reason']})",
            }

    out["methods"] = None  # filled in by the document builder (needs the wording)
    out["warnings"] = ctx.warnings
    out["other_warnings"] = ctx.other_warnings
    out["timings"] = ctx.timings
    return Computed(_jsonable(out), obj, ctx.warnings)


# ---------------------------------------------------------------- sections
def _participants(res, col: str | None, study: str | None) -> dict | None:
    if col is None:
        return None
    fr = res.data.frame
    n = pd.to_numeric(fr[col], errors="coerce")
    d = {
        "column": col,
        "sum": _f(n.sum()) if n.notna().any() else None,
        "missing": int(n.isna().sum()),
    }
    if study is not None and study in fr.columns:
        d["sum_of_study_max"] = _f(n.groupby(fr[study].to_numpy()).max().sum())
    return d


def _data_summary(spec: AnalysisSpec, ld: LoadedData, res) -> dict:
    study = spec.study or (res.data.random[0] if res.data.random else None)
    fr = res.data.frame
    n_st = int(fr[study].nunique()) if study is not None else None
    return {
        "source": ld.source_text,
        "example": spec.example,
        "rows": len(ld.frame),
        "k": int(res.k),
        "rows_dropped": list(res.data.dropped),
        "study_column": study,
        "n_studies": n_st,
        "n_levels": [int(x) for x in res.n_levels],
        "levels": list(res.level_names),
        "participants": _participants(res, spec.n, study),
        "yi": ld.yi,
        "vi": ld.vi,
        "measure": spec.measure,
        "escalc": dict(spec.escalc) or None,
    }


def _overall(spec: AnalysisSpec, res, sc: Scale) -> dict:
    c = res.coefs.iloc[0]
    statcol = "tval" if res.test == "t" else "zval"
    df = _f(c["df"]) if "df" in res.coefs.columns else None
    z = {
        "estimate": _f(c["estimate"]),
        "se": _f(c["se"]),
        "ci_lb": _f(c["ci_lb"]),
        "ci_ub": _f(c["ci_ub"]),
    }
    pr = res.predict()
    z.update(pi_lb=_f(pr.pi_lb[0]), pi_ub=_f(pr.pi_ub[0]))
    if sc.transform:
        prr = res.predict(transf="ztor")
        disp = {
            "estimate": _f(prr.pred[0]),
            "se": sc.se(z["estimate"], z["se"]),
            "ci_lb": _f(prr.ci_lb[0]),
            "ci_ub": _f(prr.ci_ub[0]),
            "pi_lb": _f(prr.pi_lb[0]),
            "pi_ub": _f(prr.pi_ub[0]),
        }
    elif sc.exp:  # odds ratios: exp of the estimate and of the limits, no SE
        disp = {k: sc.tr(v) for k, v in z.items()}
        disp["se"] = None
    else:
        disp = dict(z)
    stat, p = _f(c[statcol]), _f(c["pval"])
    dg = 2 if sc.exp else 3  # odds ratios to two decimals, as journals print them
    apa = fmt.apa_estimate(
        sc.label,
        disp["estimate"],
        disp["se"],
        disp["ci_lb"],
        disp["ci_ub"],
        _stat_name(res),
        df,
        stat,
        p,
        spec.level,
        sc.bounded,
        digits=dg,
    )
    pi = (
        f"{fmt.level_text(spec.level)} PI "
        f"{fmt.ci_text(disp['pi_lb'], disp['pi_ub'], dg, sc.bounded)}"
    )
    return {
        "scale": sc.label,
        "transformed": sc.transform,
        "display": disp,
        "model_scale": z,
        "stat_name": _stat_name(res),
        "stat": stat,
        "df": df,
        "pval": p,
        "apa": apa,
        "pi_text": pi,
        "model": _model_dict(res),
    }


def _heterogeneity_structured(ctx: _Context, spec: AnalysisSpec, res) -> dict:
    """Heterogeneity of a model with '~ inner | outer' terms: every variance and correlation
    parameter (sigma2, tau2, rho, gamma2, phi) with its profile-likelihood CI (metafor's
    confint), I² per variance, and the likelihood-ratio test of each random-effects term
    against the model without it (metafor's anova)."""
    out: dict[str, Any] = {
        "QE": _f(res.QE),
        "QE_df": int(res.QE_df),
        "QEp": _f(res.QEp),
        "structured": True,
        "levels": [],
    }
    out["QE_text"] = f"Q({res.QE_df}) = {fmt.num(res.QE, 3)}, {fmt.p_text(res.QEp)}"
    vc = res.variance_components
    prof = None
    if spec.analyses["profile"]:
        with ctx.section("profile CIs"), ctx.progress.step("profile CIs", 1) as tick:
            try:
                prof = res.profile_ci(level=spec.level).table
            except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
                out["profile_error"] = ctx.note_failure("profile CIs", "profile CIs", exc)
            tick()
    with ctx.section("heterogeneity"):
        i2res = res.i2()
        i2lv = i2res.levels
        comps = []
        for name, row in vc.iterrows():
            name = str(name)
            kind = "correlation" if name.split("[")[0] in ("rho", "phi") else "variance"
            key = name[len("sigma2[") : -1] if name.startswith("sigma2[") else name
            d: dict[str, Any] = {
                "name": name,
                "kind": kind,
                "n_groups": int(row["n_levels"]),
                "estimate": _f(row["estimate"]),
                "fixed": bool(row["fixed"]),
                "I2": _f(i2lv[key]) if key in i2lv.index else None,
            }
            if prof is not None and name in prof.index and not row["fixed"]:
                pr = prof.loc[name]
                d["ci"] = [_f(pr["ci_lb"]), _f(pr["ci_ub"])]
                d["ci_beyond"] = [
                    str(pr.get("lb_sign", "") or ""),
                    str(pr.get("ub_sign", "") or ""),
                ]
            comps.append(d)
        out["components"] = comps
        out["I2_total"] = _f(i2res.total)
        out["I2_sampling"] = _f(i2res.sampling)
        if spec.analyses["lrt"]:
            try:
                lrt = res.lrt_drop().table
                out["terms"] = [
                    {
                        "term": str(r["level"]),
                        "LRT": _f(r["LRT"]),
                        "df": int(r["df"]),
                        "pval": _f(r["pval"]),
                        "pval_mixture": _f(r["pval_mixture"]),
                        "logLik_reduced": _f(r["logLik_reduced"]),
                    }
                    for _, r in lrt.iterrows()
                ]
            except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
                out["lrt_error"] = ctx.note_failure("heterogeneity", "likelihood-ratio tests", exc)
    return out


def _heterogeneity(ctx: _Context, spec: AnalysisSpec, res) -> dict | None:
    if getattr(res, "is_structured", False) and res.tau2 is not None:
        return _heterogeneity_structured(ctx, spec, res)
    if not res.data.random:
        return {
            "QE": _f(res.QE),
            "QE_df": int(res.QE_df),
            "QEp": _f(res.QEp),
            "levels": [],
            "note": "equal-effects model: no variance components",
        }
    from mlmeta.analyses.heterogeneity import i2

    out: dict[str, Any] = {"QE": _f(res.QE), "QE_df": int(res.QE_df), "QEp": _f(res.QEp)}
    out["QE_text"] = f"Q({res.QE_df}) = {fmt.num(res.QE, 3)}, {fmt.p_text(res.QEp)}"
    prof = None
    i2res = None
    L = len(res.core.sigma2)
    if spec.analyses["profile"]:
        with ctx.section("profile CIs"), ctx.progress.step("profile CIs", L + 1) as tick:
            try:
                tabs = []
                for j in range(L):
                    tabs.append(res.profile_ci(level=spec.level, components=[j]).table.iloc[j])
                    tick()
                prof = pd.DataFrame(tabs)
                i2res = i2(res, ci=True, level=spec.level)
                tick()
            except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
                out["profile_error"] = ctx.note_failure("profile CIs", "profile CIs", exc)
                prof = None
    with ctx.section("heterogeneity"):
        if i2res is None:
            i2res = res.i2()
        lrt = None
        if spec.analyses["lrt"]:
            try:
                lrt = res.lrt_drop().table
            except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
                out["lrt_error"] = ctx.note_failure("heterogeneity", "likelihood-ratio tests", exc)
        levels = []
        for j, name in enumerate(res.level_names):
            d = {
                "level": name,
                "column": res.data.random[j],
                "n_groups": int(res.n_levels[j]),
                "sigma2": _f(res.core.sigma2[j]),
                "fixed": bool(res.core.fixed[j]),
                "I2": _f(i2res.levels.iloc[j]),
            }
            if prof is not None:
                d["sigma2_ci"] = [_f(prof["ci_lb"].iloc[j]), _f(prof["ci_ub"].iloc[j])]
            if i2res.ci is not None:
                d["I2_ci"] = [_f(i2res.ci["ci_lb"].iloc[j]), _f(i2res.ci["ci_ub"].iloc[j])]
            if lrt is not None:
                hit = lrt[lrt["dropped"] == res.data.random[j]]
                if len(hit):
                    r = hit.iloc[0]
                    d["lrt"] = {
                        "LRT": _f(r["LRT"]),
                        "df": int(r["df"]),
                        "pval": _f(r["pval"]),
                        "pval_mixture": _f(r["pval_mixture"]),
                        "sigma2_reduced": [_f(x) for x in r["sigma2_reduced"]],
                        "logLik_reduced": _f(r["logLik_reduced"]),
                        "text": f"χ²(1) = {fmt.num(r['LRT'], 3)}, {fmt.p_text(r['pval'])}",
                    }
            levels.append(d)
        out["levels"] = levels
        out["I2_total"] = _f(i2res.total)
        out["I2_sampling"] = _f(i2res.sampling)
        out["typical_v"] = _f(i2res.typical_v)
        if i2res.ci is not None:
            out["I2_total_ci"] = [_f(i2res.ci["ci_lb"].iloc[-1]), _f(i2res.ci["ci_ub"].iloc[-1])]
    return out


def _is_categorical(series: pd.Series, name: str, spec: AnalysisSpec) -> bool:
    if name in spec.categorical:
        return True
    return not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


def _mod_term(name: str, categorical: bool) -> str:
    q = name if name.isidentifier() else f"`{name}`"
    return f"factor({q})" if categorical else q


def _ref_term(name: str, spec: AnalysisSpec) -> str:
    """The formula term of moderator ``name``: the column, or R's ``relevel(col, ref = "b")``
    when the analysis file declares its reference level (``model.reference``; the categories
    are text by then, so ``ref`` is always a quoted label, never R's level position)."""
    q = name if name.isidentifier() else f"`{name}`"
    lev = spec.reference.get(name)
    if lev is None:
        return q
    quote = "'" if '"' in lev else '"'
    return f"relevel({q}, ref = {quote}{lev}{quote})"


def _readable_names(rows: list[dict], spec: AnalysisSpec, names) -> list[dict]:
    """Coefficient rows with ``relevel(m, ref = "b")a`` shown as ``ma`` (the name the default
    coding gives the same contrast, a - b), so tables and texts read alike either way."""
    for m in names:
        if m in spec.reference:
            term = _ref_term(m, spec)
            for r in rows:
                if r["name"].startswith(term):
                    r["name"] = m + r["name"][len(term) :]
    return rows


def _moderators(
    ctx: _Context, spec: AnalysisSpec, ld: LoadedData, res, sc: Scale, obj: dict
) -> list[dict]:
    out = []
    obj["moderators"] = {}
    study = spec.study or (res.data.random[0] if res.data.random else None)
    for m in spec.moderators:
        with ctx.section("moderators", f"moderator {m}"):
            entry = _moderator(ctx, spec, ld, sc, obj, m, study)
        out.append(entry)
    return out


def _moderator(ctx, spec, ld, sc, obj, m, study) -> dict:
    col = ld.frame[m]
    cat = _is_categorical(col, m, spec)
    data = ld.frame
    if cat and not (col.dtype == object or pd.api.types.is_string_dtype(col)):
        data = ld.frame.copy()
        data[m] = [
            None
            if pd.isna(x)
            else (str(int(x)) if isinstance(x, float) and float(x).is_integer() else str(x))
            for x in col
        ]
    entry: dict[str, Any] = {"name": m, "type": "categorical" if cat else "continuous"}
    entry["formula"] = f"~ {_ref_term(m, spec) if cat else _mod_term(m, False)}"
    try:
        if cat:
            nlev = data[m].dropna().nunique()
            if nlev < 2:  # said in the report; the other analyses go on
                one = f" ({data[m].dropna().iloc[0]!r})" if nlev else ""
                entry.update(
                    ctx.note_failure(
                        f"moderator {m}",
                        f"moderator {m!r}",
                        MlmetaError(
                            f"it has a single category{one} in the data, so it cannot be tested"
                        ),
                    )
                )
                return entry
        rm = _fit(spec, ld, entry["formula"], data=data)
    except InputError:
        raise  # bad input (constant, collinear, non-numeric moderator): refuse the run
    except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
        entry.update(ctx.note_failure(f"moderator {m}", f"moderator {m!r}", exc))
        return entry
    obj["moderators"][m] = {"res": rm, "data": data}
    entry["k"] = int(rm.k)
    entry["rows_dropped"] = len(rm.data.dropped)
    fr = rm.data.frame
    entry["n_studies"] = int(fr[study].nunique()) if study is not None else None
    entry["omnibus"] = _omnibus(rm)
    entry["sigma2"] = [_f(x) for x in rm.core.sigma2]
    entry["model"] = _model_dict(rm)
    rob = _robust_omnibus_into(ctx, spec, rm, entry, f"moderator {m}", f"CR2 test of {m!r}")
    if rm.data.random:
        try:
            r2 = rm.r2()
            entry["R2"] = {
                "levels": {k: _f(v) for k, v in r2.levels.items()},
                "total": _f(r2.total),
                "sigma2_null": [_f(x) for x in r2.sigma2_null],
                "applicable": _r2_applicable(rm, [m]),
            }
        except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
            entry["R2"] = ctx.note_failure(f"moderator {m}", f"R2 of {m!r}", exc)
    if cat:
        levels = sorted(str(x) for x in data[m].dropna().unique())
        entry["reference"] = spec.reference.get(m, levels[0])
        entry["reference_declared"] = m in spec.reference
        # differences from the reference category (the coefficients of ~ m after the intercept)
        entry["contrasts"] = [
            dict(r, level=r["name"][len(m) :])
            for r in _readable_names(_coef_rows(rm, rob), spec, [m])[1:]
        ]
        cats = _categories(ctx, spec, ld, data, m, rm, sc, study)
        entry["categories"] = [c for c in cats if c["level"] == entry["reference"]] + [
            c for c in cats if c["level"] != entry["reference"]
        ]
    else:
        entry["coefficients"] = _coef_rows(rm, rob)
        slope = entry["coefficients"][-1]
        dg = fmt.coef_digits(slope["se"])
        entry["apa"] = (
            f"b = {fmt.num(slope['estimate'], dg)}, "
            f"{fmt.level_text(spec.level)} CI "
            f"{fmt.ci_text(slope['ci_lb'], slope['ci_ub'], dg)}, "
            f"{_stat_name(rm)}"
            f"{'(' + fmt.df_text(slope['df']) + ')' if slope['df'] else ''}"
            f" = {fmt.num(slope['stat'], 3)}, {fmt.p_text(slope['pval'])}"
        )
    return entry


def _categories(ctx, spec, ld, data, m, rm, sc: Scale, study) -> list[dict]:
    """Per category: k, studies, the estimate with CI from the cell-means model
    (``~ 0 + factor(m)``), model-based and CR2."""
    fr = rm.data.frame
    cm = _fit(spec, ld, f"~ 0 + {_mod_term(m, True)}", data=data)
    rob = None
    if _can_robust(spec, cm):
        try:
            rob = cm.robust(cluster=_rob_cluster(spec, cm), type="CR2")
        except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
            ctx.note_failure(f"moderator {m}", f"CR2 subgroup estimates of {m!r}", exc)
    rows = _coef_rows(cm, rob)
    prefix = f"{_mod_term(m, True)}"
    out = []
    for row in rows:
        lev = row["name"].removeprefix(prefix)
        sub = fr[fr[m].astype(str) == lev]
        d = {
            "level": lev,
            "k": len(sub),
            "n_studies": int(sub[study].nunique()) if study is not None else None,
            "model_scale": {k: row[k] for k in ("estimate", "se", "ci_lb", "ci_ub")},
            "estimate": sc.tr(row["estimate"]),
            "se": sc.se(row["estimate"], row["se"]),
            "ci_lb": sc.tr(row["ci_lb"]),
            "ci_ub": sc.tr(row["ci_ub"]),
            "stat": row["stat"],
            "df": row["df"],
            "pval": row["pval"],
        }
        if "robust" in row:
            rr = row["robust"]
            d["robust"] = {
                "ci_lb": sc.tr(rr["ci_lb"]),
                "ci_ub": sc.tr(rr["ci_ub"]),
                "df": rr["df"],
                "pval": rr["pval"],
                "stat": rr["stat"],
                "se_model_scale": rr["se"],
            }
        out.append(d)
    return out


def _robust_omnibus_into(ctx, spec, model, into: dict, section: str, what: str):
    """CR2 robust fit of ``model`` (None if not applicable); its omnibus test, or the reason it
    is unavailable, goes to ``into["robust_omnibus"]``."""
    if not _can_robust(spec, model):
        return None
    try:
        rob = model.robust(cluster=_rob_cluster(spec, model), type="CR2")
    except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
        into["robust_omnibus"] = ctx.note_failure(section, what, exc)
        return None
    into["robust_omnibus"] = _robust_omnibus(rob)
    return rob


def _joint(ctx: _Context, spec: AnalysisSpec, ld: LoadedData, obj: dict) -> dict | None:
    fitted = obj["moderators"]
    names = [m for m in spec.moderators if m in fitted]
    if len(names) < 2:
        return None
    data = ld.frame.copy()
    terms = []
    for m in names:
        data[m] = fitted[m]["data"][m]
        terms.append(_ref_term(m, spec))
    formula = "~ " + " + ".join(terms)
    out: dict[str, Any] = {"formula": formula, "moderators": names}
    try:
        rj = _fit(spec, ld, formula, data=data)
    except InputError as exc:
        raise InputError(f"joint moderator model {formula!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
        out.update(ctx.note_failure("moderators", "joint moderator model", exc))
        return out
    obj["joint"] = rj
    rob = _robust_omnibus_into(ctx, spec, rj, out, "moderators", "CR2 test of the joint model")
    out["k"] = int(rj.k)
    out["rows_dropped"] = len(rj.data.dropped)
    out["coefficients"] = _readable_names(_coef_rows(rj, rob), spec, names)
    out["omnibus"] = _omnibus(rj)
    out["sigma2"] = [_f(x) for x in rj.core.sigma2]
    if rj.data.random:
        try:
            r2 = rj.r2()
            out["R2"] = {
                "levels": {k: _f(v) for k, v in r2.levels.items()},
                "total": _f(r2.total),
                "sigma2_null": [_f(x) for x in r2.sigma2_null],
                "applicable": _r2_applicable(rj, names),
            }
        except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
            out["R2"] = ctx.note_failure("moderators", "R2 of the joint model", exc)
    out["model"] = _model_dict(rj)
    return out


def _r2_applicable(rm, mods: list[str]) -> dict:
    """Per level: can the moderators explain variance there? A moderator that is constant
    within every group of level l-1 (e.g. a study-level moderator) cannot explain the variance
    among units of level l within those groups (e.g. effect sizes within a study), so R² at
    level l is not meaningful; the outer level is always applicable."""
    fr = rm.data.frame
    if getattr(rm, "is_structured", False):
        return _r2_applicable_structured(rm, mods)
    codes = rm.level_codes()
    out = {}
    for j, name in enumerate(rm.level_names):
        if j == 0:
            out[name] = True
            continue
        parent = codes[j - 1]
        varies = False
        for m in mods:
            col = fr[m].astype(str).to_numpy()
            per = pd.Series(col).groupby(parent).nunique()
            if (per > 1).any():
                varies = True
                break
        out[name] = varies
    return out


def _r2_applicable_structured(rm, mods: list[str]) -> dict:
    """:func:`_r2_applicable` for general structures: a ``~ 1 | a/b`` level's parent groups are
    those of ``a``; a crossed factor (``~ 1 | lab``), an ``R=`` factor and tau2/gamma2 have
    none, so they count as applicable."""
    fr = rm.data.frame
    out = {}
    for name in rm.level_names:
        cols = str(name).split("/")
        if len(cols) < 2 or not all(c in fr.columns for c in cols[:-1]):
            out[name] = True
            continue
        parent = fr[cols[:-1]].astype(str).agg("\x1f".join, axis=1).to_numpy()
        out[name] = any(
            bool((pd.Series(fr[m].astype(str).to_numpy()).groupby(parent).nunique() > 1).any())
            for m in mods
        )
    return out


def _bias_cluster(spec: AnalysisSpec, res) -> str | None:
    """Cluster of the aggregated bias analyses: the outer level (None) of a nested model; for
    general structures model.cluster, else the factor containing every random effect
    (``default_cluster``), else data.study (crossed terms have no such factor)."""
    if not getattr(res, "is_structured", False):
        return None
    if spec.cluster:
        return spec.cluster
    try:
        return res.default_cluster()
    except InputError:
        return spec.study


def _inference(spec: AnalysisSpec, out: dict, res) -> dict:
    """The primary inference (model-based by default, CR2 when the analysis file says so) and
    whether the model-based and CR2 tests of the pooled effect reach the same conclusion."""
    alpha = 1 - to_fraction(spec.level)
    o = out["overall"]
    rb = out.get("robust") or {}
    d: dict[str, Any] = {
        "primary": spec.inference,
        "alpha": alpha,
        "model_significant": o["pval"] is not None and o["pval"] < alpha,
    }
    if rb.get("pval") is not None or rb.get("df") is not None:
        st = df_status(rb.get("df"))
        d["cr2_df_status"] = st
        d["cr2_significant"] = (
            st != "undefined" and rb.get("pval") is not None and rb["pval"] < alpha
        )
        d["differ"] = st != "undefined" and d["cr2_significant"] != d["model_significant"]
    elif spec.inference == "CR2":
        d["primary_unavailable"] = True
    return d


def _studies(spec: AnalysisSpec, ld: LoadedData, res) -> dict | None:
    """One row per study: its label, number of effect sizes, participants (largest sample of
    the study) and the values of each moderator (several values joined)."""
    study = spec.study or (res.data.random[0] if res.data.random else None)
    if study is None:
        return None
    fr = res.data.frame
    mods = [m for m in spec.moderators if m in ld.frame.columns]
    # the moderators' values as read (before coding), for the rows the model used
    src = ld.frame.loc[fr.index] if fr.index.isin(ld.frame.index).all() else fr
    keys = fr[study]
    order = pd.unique(keys)
    sizes = keys.groupby(keys, sort=False).size()
    nmax = None
    if spec.n is not None and spec.n in fr.columns:
        nmax = pd.to_numeric(fr[spec.n], errors="coerce").groupby(keys, sort=False).max()

    def text(x) -> str:
        x = _py(x)
        if isinstance(x, float):
            return fmt.num(x, 6).rstrip("0").rstrip(".")
        return str(x).replace("-", fmt.MINUS) if isinstance(x, int) else str(x)

    values: dict[str, dict] = {}
    for m in mods:
        col = src[m] if m in src.columns else fr.get(m)
        if col is None:
            continue
        ok = col.notna().to_numpy()
        uniq = col[ok].groupby(keys[ok].to_numpy(), sort=False).unique()
        values[m] = {sid: ", ".join(text(x) for x in u) for sid, u in uniq.items()}
    rows = []
    for sid in order:
        r: dict[str, Any] = {"study": _py(sid), "k": int(sizes[sid])}
        if nmax is not None:
            r["n"] = _f(nmax[sid]) if pd.notna(nmax[sid]) else None
        r["moderators"] = {m: values[m].get(sid) or None for m in values}
        rows.append(r)
    return {"study_column": study, "n_column": spec.n, "moderators": mods, "rows": rows}


def _robust_overall(ctx: _Context, spec: AnalysisSpec, res, sc: Scale, obj: dict) -> dict:
    why = _robust_blocker(spec, res)
    if why is not None:
        return {"available": False, "reason": why}
    try:
        rob = res.robust(cluster=_rob_cluster(spec, res), type="CR2")
    except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
        return ctx.note_failure("robust", "CR2 robust inference", exc)
    obj["robust"] = rob
    c = rob.coefs.iloc[0]
    est = float(c["estimate"])
    d = {
        "type": "CR2",
        "cluster": rob.cluster,
        "n_clusters": rob.n_clusters,
        "model_scale": {
            "estimate": est,
            "se": _f(c["se"]),
            "ci_lb": _f(c["ci_lb"]),
            "ci_ub": _f(c["ci_ub"]),
        },
        "estimate": sc.tr(est),
        "se": sc.se(est, c["se"]),
        "ci_lb": sc.tr(c["ci_lb"]),
        "ci_ub": sc.tr(c["ci_ub"]),
        "stat": _f(c["tval"]),
        "df": _f(c["df"]),
        "pval": _f(c["pval"]),
        "block": rob.to_dict(),
    }
    d["apa"] = fmt.apa_estimate(
        sc.label,
        d["estimate"],
        d["se"],
        d["ci_lb"],
        d["ci_ub"],
        "t",
        d["df"],
        d["stat"],
        d["pval"],
        spec.level,
        sc.bounded,
        digits=2 if sc.exp else 3,
    )
    return d


def _sensitivity(ctx: _Context, spec: AnalysisSpec, res, sc: Scale, obj: dict) -> dict:
    out: dict[str, Any] = {}
    cluster = spec.study if spec.study else None
    has_cluster = bool(res.data.random) or cluster is not None
    want_loo = spec.analyses["loo"] and has_cluster
    want_cooks = spec.analyses["influence"] and has_cluster
    if want_loo or want_cooks:
        with ctx.section("leave-one-out"):
            try:
                _, labels = res.cluster_codes(cluster)
            except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
                out["loo"] = ctx.note_failure("leave-one-out", "leave-one-study-out", exc)
                labels = None
            if labels is not None:
                from mlmeta.analyses.influence import cluster_refits

                with ctx.progress.step("leave-one-out", len(labels)) as tick:
                    loo, ck = cluster_refits(res, cluster, progress=tick)
                obj["loo_table"] = loo
                loo_rows = []
                for r_ in loo.itertuples():
                    r: Any = r_
                    if not np.isfinite(np.ravel(r.beta)[0]):
                        loo_rows.append(
                            {"left_out": _py(r.left_out), "estimate": None, "model_scale": None}
                        )
                        continue
                    e, s_, lo, hi, pv = (
                        float(np.ravel(x)[0]) for x in (r.beta, r.se, r.ci_lb, r.ci_ub, r.pval)
                    )
                    loo_rows.append(
                        {
                            "left_out": _py(r.left_out),
                            "model_scale": {
                                "estimate": e,
                                "se": s_,
                                "ci_lb": lo,
                                "ci_ub": hi,
                                "sigma2": [float(x) for x in r.sigma2],
                            },
                            "estimate": sc.tr(e),
                            "ci_lb": sc.tr(lo),
                            "ci_ub": sc.tr(hi),
                            "pval": pv,
                            "I2": _f(r.I2),
                        }
                    )
                cooks = ck["value"].to_numpy()
                if want_loo:
                    out["loo"] = _loo_summary(
                        loo_rows, res, spec, sc, cluster or res.data.random[0]
                    )
                if want_cooks:
                    from mlmeta.core.dist import chi2_isf

                    v = np.array(cooks, dtype=float)
                    # Viechtbauer & Cheung (2010), metafor's influence(): D > chi2_{p}(.50)
                    cut = float(chi2_isf(0.5, res.p))
                    flag = np.isfinite(v) & (v > cut)
                    rows = [
                        {"cluster": _py(lab), "value": _f(x), "influential": bool(fl)}
                        for lab, x, fl in zip(labels, v, flag)
                    ]
                    out["cooks"] = {
                        "rows": rows,
                        "cutoff": cut,
                        "p": int(res.p),
                        "rule": f"the median of the χ² distribution with {res.p} df",
                        "influential": [r["cluster"] for r in rows if r["influential"]],
                    }
    if spec.analyses["influence"]:
        with ctx.section("influence"):
            from mlmeta.core.dist import norm_isf

            rs = res.rstandard()
            fr = res.data.frame
            alpha = 0.05
            if spec.outlier_rule == "bonferroni":
                crit = float(norm_isf(alpha / (2 * res.k)))
                rule = (
                    f"|studentized residual| > {crit:.2f}, the two-sided Bonferroni critical "
                    f"value for {res.k} effect sizes at α = .05"
                )
            else:
                crit = float(norm_isf(alpha / 2))
                rule = (
                    "|studentized residual| > 1.96 (no correction for multiplicity: about 5% "
                    "of effect sizes exceed it by chance alone)"
                )
            zz = rs["z"].to_numpy()
            flag = np.isfinite(zz) & (np.abs(zz) > crit)
            flagged = []
            for pos in np.flatnonzero(flag):
                d = {
                    "row": _row_number(fr, int(pos)),
                    "z": _f(rs["z"].iloc[pos]),
                    "yi": _f(res.data.y[pos]),
                    "effect": sc.tr(res.data.y[pos]),
                }
                for col in res.data.random:
                    d[col] = _py(fr[col].iloc[pos])
                flagged.append(d)
            out["outliers"] = {
                "rule": rule,
                "rule_name": spec.outlier_rule,
                "critical": crit,
                "alpha": alpha,
                "n": len(flagged),
                "k": int(res.k),
                "rows": flagged,
                "n_above_1_96": int(np.sum(np.abs(zz[np.isfinite(zz)]) > 1.959963984540054)),
                "z": [_f(x) for x in rs["z"]],
            }
    return out


def _row_number(fr: pd.DataFrame, pos: int):
    idx = fr.index[pos]
    return int(idx) + 1 if isinstance(idx, (int, np.integer)) else str(idx)


def _loo_summary(rows, res, spec, sc: Scale, cname) -> dict:
    ok = [r for r in rows if r["estimate"] is not None]
    out = {"cluster": cname, "rows": rows, "n": len(rows), "failed": len(rows) - len(ok)}
    if not ok:
        return out
    lo = min(ok, key=lambda r: r["estimate"])
    hi = max(ok, key=lambda r: r["estimate"])
    sig = [r for r in ok if r["pval"] is not None and r["pval"] < 1 - to_fraction(spec.level)]
    out.update(
        {
            "min": lo["estimate"],
            "min_left_out": lo["left_out"],
            "max": hi["estimate"],
            "max_left_out": hi["left_out"],
            "n_significant": len(sig),
            "sign_changes": sum(
                1 for r in ok if np.sign(r["model_scale"]["estimate"]) != np.sign(res.core.beta[0])
            ),
        }
    )
    return out


def _small_study_predictor(spec: AnalysisSpec, ld: LoadedData, res) -> dict:
    """The Egger/PET predictor: sqrt(vi) ("se"), or sqrt(1/n~) ("sqrt_inv_n", n~ = n1 n2 /
    (n1 + n2), or the total sample size) which, unlike the SE of a standardized mean
    difference or a log odds ratio, does not depend on the estimate itself (Pustejovsky &
    Rodgers, 2019). "auto": sqrt_inv_n for SMD and OR when sample sizes are known, else se.
    ``n`` is the sample-size argument of :func:`mlmeta.pubbias.egger`."""
    want = spec.egger_predictor
    artefact = spec.measure in ("SMD", "OR")
    if want == "auto":
        want = "sqrt_inv_n" if artefact else "se"
    out: dict[str, Any] = {"requested": spec.egger_predictor, "artefact": artefact}
    if want == "sqrt_inv_n":
        fr = res.data.frame
        esc = spec.escalc or {}
        n_arg: Any = None
        try:
            if "n1i" in esc and "n2i" in esc:
                n_arg, how = (esc["n1i"], esc["n2i"]), "n1·n2/(n1 + n2)"
            elif all(c in esc for c in ("ai", "bi", "ci", "di")):
                n1 = (pd.to_numeric(fr[esc["ai"]]) + pd.to_numeric(fr[esc["bi"]])).to_numpy(float)
                n2 = (pd.to_numeric(fr[esc["ci"]]) + pd.to_numeric(fr[esc["di"]])).to_numpy(float)
                n_arg, how = (n1, n2), "n1·n2/(n1 + n2)"
            elif spec.n is not None and spec.n in fr.columns:
                n_arg, how = spec.n, "the total sample size"
        except (KeyError, ValueError, TypeError):
            n_arg = None
        if n_arg is not None:
            out.update(name="sqrt_inv_n", label="√(1/ñ)", n=n_arg, ntilde=how)
            return out
        out["fallback"] = "no sample sizes per group or in total (data.n) to compute ñ"
    out.update(name="se", label="√vi (the standard error)", n=None)
    return out


def _bias(ctx: _Context, spec: AnalysisSpec, res, sc: Scale, ld: LoadedData) -> dict:
    from mlmeta.pubbias.egger import egger, pet_peese

    out: dict[str, Any] = {}
    if not res.intercept_only:
        return {"available": False, "reason": "bias tests need the intercept-only model"}
    pred = _small_study_predictor(spec, ld, res)
    out["predictor"] = {k: v for k, v in pred.items() if k != "n"}
    which = "sei" if pred["name"] == "se" else "sqrt_inv_n"
    structured = getattr(res, "is_structured", False)
    robust = (bool(res.data.random) or structured) and _can_robust(spec, res)
    try:
        rob_failed: dict | None = None
        try:
            eg = egger(
                res,
                robust=robust,
                predictor=which,
                n=pred["n"],
                cluster=spec.cluster if structured else None,
            )
        except Exception as exc:  # noqa: BLE001 -- the CR2 version alone may be undefined
            if not robust:
                raise
            # e.g. every residual 0: the model-based test stays, the CR2 one is explained
            eg = egger(res, robust=False, predictor=which, n=pred["n"])
            rob_failed = ctx.note_failure("publication bias", "CR2 Egger test", exc)
        d = eg.to_dict()
        if rob_failed is not None:
            d["robust"], d["robust_apa"] = rob_failed, None
        elif spec.analyses["robust"] and not robust and (res.data.random or structured):
            # CR2 undefined for this model (said once, in the robust section)
            d["robust"] = {"available": False, "reason": _robust_blocker(spec, res)}
            d["robust_apa"] = None
        d["predictor"] = pred["name"]
        d["apa"] = (
            f"b = {fmt.num(d['coef'], 3)}, SE = {fmt.num(d['se'], 3)}, "
            f"{_stat_name(res)}{'(' + fmt.df_text(d['df']) + ')' if d['df'] else ''} = "
            f"{fmt.num(d['stat'], 3)}, {fmt.p_text(d['pval'])}"
        )
        rb = d.get("robust")
        if rb and rob_failed is None:
            rb["df_status"] = df_status(rb.get("df"))
            if rb["df_status"] == "undefined":
                d["robust_apa"] = None
            else:
                d["robust_apa"] = (
                    f"CR2: t({fmt.df_text(rb['df'])}) = "
                    f"{fmt.num(rb['stat'], 3)}, {fmt.p_text(rb['pval'])}"
                )
        out["egger"] = d
    except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
        out["egger"] = ctx.note_failure("publication bias", "Egger test", exc)
    try:
        pp = pet_peese(res, predictor=which, n=pred["n"])
        d = {}
        for name in ("PET", "PEESE"):
            r = pp.loc[name]
            d[name] = {
                "model_scale": {
                    "estimate": _f(r["estimate"]),
                    "se": _f(r["se"]),
                    "ci_lb": _f(r["ci_lb"]),
                    "ci_ub": _f(r["ci_ub"]),
                },
                "estimate": sc.tr(r["estimate"]),
                "ci_lb": sc.tr(r["ci_lb"]),
                "ci_ub": sc.tr(r["ci_ub"]),
                "pval": _f(r["pval"]),
                "slope": _f(r["slope"]),
                "slope_pval": _f(r["slope_pval"]),
            }
        # conditional PET-PEESE (Stanley & Doucouliagos 2014): PEESE when PET's intercept
        # differs from 0 at the chosen level, else PET
        alpha = 1 - to_fraction(spec.level)
        d["chosen"] = (
            "PEESE" if (d["PET"]["pval"] is not None and d["PET"]["pval"] < alpha) else "PET"
        )
        d["predictor"] = pred["name"]
        out["pet_peese"] = d
    except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
        out["pet_peese"] = ctx.note_failure("publication bias", "PET-PEESE", exc)
    out["aggregated"] = _aggregated(ctx, spec, res, sc)
    return out


def _aggregated(ctx: _Context, spec: AnalysisSpec, res, sc: Scale) -> dict:
    """Rank test, trim-and-fill and the selection model on study-aggregated effects (as
    :func:`mlmeta.pubbias.aggregated_bias` runs them), each on its own so that one that cannot
    be estimated (e.g. no effect in a p-value interval) leaves the others in the report."""
    from mlmeta import pubbias

    if not res.data.random and not getattr(res, "is_structured", False):
        return {"available": False, "reason": "needs a study level to aggregate within"}
    rho = spec.bias_rho_used
    steps = (*spec.selection_steps, 1.0)
    cluster = _bias_cluster(spec, res)
    try:
        codes, labels = res.cluster_codes(cluster)
        agg = pubbias.aggregate(res.data.y, res.data.v, codes, rho)
        agg["cluster"] = labels
        y, v = agg["yi"].to_numpy(), agg["vi"].to_numpy()
        fit = pubbias.rma_uni(y, v, "REML", level=spec.level)
    except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
        return ctx.note_failure("publication bias", "aggregated bias tests", exc)
    out: dict[str, Any] = {
        "available": True,
        "rho": rho,
        "rho_from": spec.to_dict()["analyses"]["bias_rho_from"],
        "selection_side_requested": spec.selection_side,
        "n_aggregated": len(agg),
        "aggregate": _jsonable(agg),
    }
    if cluster is not None and cluster != spec.study:
        out["cluster"] = cluster  # a structured model's containing factor (e.g. labs)
    alt = {
        "auto": "less" if fit["beta"] < 0 else "greater",
        "positive": "greater",
        "negative": "less",
    }[spec.selection_side]
    runs = {
        "rma_agg": lambda: fit,
        "ranktest": lambda: pubbias.ranktest(y, v),
        "trimfill": lambda: pubbias.trimfill(y, v, method="REML", level=spec.level),
        "selmodel": lambda: pubbias.selmodel_stepfun(
            y, v, steps, method="REML", alternative=alt, level=spec.level
        ),
    }
    names = {
        "ranktest": "rank correlation test",
        "trimfill": "trim-and-fill",
        "selmodel": "selection model",
    }
    for key, fn in runs.items():
        try:
            val = fn()
        except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
            out[key] = ctx.note_failure("publication bias", names[key], exc)
            continue
        vd = {k: _jsonable(x) for k, x in dict(val).items() if k != "hessian"}
        if key in ("rma_agg", "trimfill", "selmodel"):
            for b in ("beta", "ci_lb", "ci_ub"):
                if isinstance(vd.get(b), (int, float)):
                    vd[f"{b}_display"] = sc.tr(vd[b])
        out[key] = vd
    # effects per p-value interval (one-sided on the side used), also when the model failed
    p1 = 1 - np.asarray(
        [0.5 * math.erfc(-(yy / math.sqrt(vv)) / math.sqrt(2)) for yy, vv in zip(y, v)]
    )
    p_side = p1 if alt == "greater" else 1 - p1
    lows = [0.0, *steps[:-1]]
    bins = [
        {
            "p_from": a,
            "p_to": b,
            "k": int(np.sum((p_side > a) & (p_side <= b)) + (np.sum(p_side <= 0) if a == 0 else 0)),
        }
        for a, b in zip(lows, steps)
    ]
    sm = out["selmodel"]
    sm["bins"] = bins
    sm["side"] = {"greater": "positive", "less": "negative"}[alt]
    sm.setdefault("alternative", alt)
    sm.setdefault("steps", list(steps))
    return out


def power_inputs(spec: AnalysisSpec, res) -> dict:
    """The numbers of the fitted overall model that the power section needs
    (:func:`mlmeta.power.report.power_section`): J studies, the overall estimate, τ = √σ² of
    the study (outer) level and ω = √(sum of σ² of the inner levels), the mean sampling
    variance, the mean number of effect sizes per study and the model's ρ (None without one).
    """
    study = spec.study or (res.data.random[0] if res.data.random else None)
    if study is None:
        raise InputError("power analysis: no study column (set data.study or model.random)")
    fr = res.data.frame
    j = int(fr[study].nunique())
    s2 = [float(x) for x in res.core.sigma2]
    levels = list(res.level_names)
    if levels and levels[0] == study:
        tau2, omega2 = s2[0], sum(s2[1:])
    elif not levels:
        tau2, omega2 = 0.0, 0.0
    else:
        raise InputError(
            f"power analysis needs a model whose outer level is the study column "
            f"{study!r}; the random levels are {', '.join(levels)}"
        )
    return {
        "studies": j,
        "estimate": float(res.core.beta[0]),
        "tau": math.sqrt(tau2),
        "omega": math.sqrt(omega2),
        "mean_vi": float(np.mean(fr["_vi"].to_numpy(float))),
        "es_per_study": int(res.k) / j,
        "rho": res.rho,
        "measure": spec.measure,
    }


def _power(spec: AnalysisSpec, res) -> dict:
    """The ``[power]`` section: :func:`mlmeta.power.report.power_section` of the overall model
    (balanced design: every study with the mean sampling variance and the mean number of
    effect sizes), with its inputs."""
    from mlmeta.power.report import power_section

    fit = power_inputs(spec, res)
    if res.p != 1:
        raise InputError("power analysis needs the intercept-only overall model")
    return {
        "available": True,
        "inputs": fit,
        "spec": dict(spec.power or {}),
        **power_section(spec.power, fit),
    }


def _che_sweep(ctx: _Context, spec: AnalysisSpec, res, sc: Scale) -> dict:
    """The model refitted under the CHE working model for each rho (``res.refit(rho=...)``),
    with model-based and CR2 inference for the pooled effect (first coefficient)."""
    with ctx.section("CHE sweep"):
        rc = (
            spec.rho_cluster or res.rho_cluster or (res.data.random[0] if res.data.random else None)
        )
        if rc is None:
            return {
                "available": False,
                "reason": "no cluster within which sampling errors "
                "could correlate (set model.rho_cluster)",
            }
        rows = []
        start = res.core.sigma2
        with ctx.progress.step("rho sweep", len(spec.che_rhos)) as tick:
            for r in spec.che_rhos:
                try:
                    f = res.refit(rho=float(r), rho_cluster=rc, start=start)
                except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
                    return ctx.note_failure("CHE sweep", "CHE sensitivity analysis", exc)
                start = f.core.sigma2
                t = f.tests
                d: dict[str, Any] = {
                    "rho": float(r),
                    "beta": _f(f.core.beta[0]),
                    "se": _f(t.se[0]),
                    "ci_lb": _f(t.ci_lb[0]),
                    "ci_ub": _f(t.ci_ub[0]),
                    "pval": _f(t.pval[0]),
                    "estimate": sc.tr(f.core.beta[0]),
                    "ci_lb_display": sc.tr(t.ci_lb[0]),
                    "ci_ub_display": sc.tr(t.ci_ub[0]),
                }
                for j, n in enumerate(f.level_names):
                    d[f"sigma2_{n}"] = _f(f.core.sigma2[j])
                if _can_robust(spec, f):
                    try:
                        rb = f.robust(cluster=_rob_cluster(spec, f), type="CR2")
                        c = rb.coefs.iloc[0]
                        d["robust"] = {
                            "se": _f(c["se"]),
                            "df": _f(c["df"]),
                            "pval": _f(c["pval"]),
                            "ci_lb": _f(c["ci_lb"]),
                            "ci_ub": _f(c["ci_ub"]),
                            "ci_lb_display": sc.tr(c["ci_lb"]),
                            "ci_ub_display": sc.tr(c["ci_ub"]),
                            "df_status": df_status(_f(c["df"])),
                        }
                    except Exception as exc:  # noqa: BLE001 -- optional: noted, not fatal
                        d["robust"] = {
                            "available": False,
                            "reason": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                        }
                rows.append(d)
                tick()
        sig_cols = [f"sigma2_{n}" for n in res.level_names]
        return {
            "available": True,
            "rhos": list(spec.che_rhos),
            "rows": rows,
            "sigma2_columns": sig_cols,
            "rho_cluster": rc,
        }

"""Text summary of a fit, laid out like metafor's ``print.rma.mv`` so readers recognise it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from mlmeta.results import MetaResults

__all__ = ["format_p", "format_structured_components", "format_summary", "stars"]


def format_p(p: float, digits: int = 4) -> str:
    """p-value as metafor prints it: '< .0001' below 10^-digits, else rounded."""
    if p is None or not np.isfinite(p):
        return "NA"
    if p < 10**-digits:
        return "< ." + "0" * (digits - 1) + "1"
    return f"{p:.{digits}f}"


def stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "." if p < 0.1 else ""


def _table(rows: list[list[str]], header: list[str], index: list[str] | None = None) -> str:
    cols = [header] + rows
    if index is not None:
        cols = [[""] + header] + [[i] + r for i, r in zip(index, rows)]
    widths = [max(len(r[j]) for r in cols) for j in range(len(cols[0]))]
    lines = []
    for r in cols:
        cells = []
        for j, c in enumerate(r):
            cells.append(
                c.ljust(widths[j]) if (index is not None and j == 0) else c.rjust(widths[j])
            )
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_summary(res: MetaResults, digits: int = 4) -> str:
    f = f"{{:.{digits}f}}"
    out = []
    structured = getattr(res, "is_structured", False)
    L = len(res.level_names)
    title = "Multivariate Meta-Analysis Model" if L or structured else "Equal-Effects Model"
    out.append(f"{title} (k = {res.k}; method: {res.method})")
    if res.data.dropped:
        out.append(f"({len(res.data.dropped)} of {res.data.k_all} rows dropped for missing values)")
    out.append("")
    fs = res.fitstats
    hdr = ["logLik", "Deviance", "AIC", "BIC", "AICc"]
    vals = [f.format(fs[x]) for x in ("logLik", "deviance", "AIC", "BIC", "AICc")]
    out.append(_table([vals], hdr))
    out.append("")
    if structured:
        out += format_structured_components(res, digits)
    elif L:
        out.append("Variance Components:")
        out.append("")
        rows = []
        for i, name in enumerate(res.level_names):
            s2 = float(res.core.sigma2[i])
            rows.append(
                [
                    f.format(s2),
                    f.format(np.sqrt(s2)),
                    str(res.n_levels[i]),
                    "yes" if res.core.fixed[i] else "no",
                    name,
                ]
            )
        out.append(
            _table(
                rows,
                ["estim", "sqrt", "nlvls", "fixed", "factor"],
                [f"sigma^2.{i + 1}" for i in range(L)],
            )
        )
        out.append("")
    het = (
        "Test for Residual Heterogeneity:"
        if res.p > 1 or not res.intercept_only
        else "Test for Heterogeneity:"
    )
    out.append(het)
    out.append(f"Q(df = {res.QE_df}) = {f.format(res.QE)}, p-val {_peq(res.QEp, digits)}")
    out.append("")
    if not res.intercept_only and res.p > 0:
        m, d2 = res.QM_df
        which = ",".join(str(i + 1) for i in res.btt)
        lab = "coefficient" if m == 1 else "coefficients"
        out.append(f"Test of Moderators ({lab} {which}):")
        if d2 is None:
            out.append(f"QM(df = {m}) = {f.format(res.QM)}, p-val {_peq(res.QMp, digits)}")
        else:
            out.append(
                f"F(df1 = {m}, df2 = {d2:g}) = {f.format(res.QM)}, p-val {_peq(res.QMp, digits)}"
            )
        out.append("")
    out.append("Model Results:")
    out.append("")
    t = res.tests
    rows = []
    for j in range(res.p):
        r = [f.format(res.core.beta[j]), f.format(t.se[j]), f.format(t.stat[j])]
        if t.df is not None:
            r.append(f"{t.df[j]:g}")
        r += [
            format_p(t.pval[j], digits),
            f.format(t.ci_lb[j]),
            f.format(t.ci_ub[j]),
            stars(t.pval[j]),
        ]
        rows.append(r)
    hdr = ["estimate", "se", "tval" if res.test == "t" else "zval"]
    if t.df is not None:
        hdr.append("df")
    hdr += ["pval", "ci.lb", "ci.ub", ""]
    idx = list(res.coef_names) if not res.intercept_only else None
    out.append(_table(rows, hdr, idx))
    out.append("")
    out.append("---")
    out.append("Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
    if res.intercept_only and res.measure == "ZCOR":
        pr = res.predict(transf="ztor")
        out.append("")
        out.append(
            f"Back-transformed to r: {pr.pred[0]:.3f}, {res.spec.level_percent:g}% CI "
            f"[{pr.ci_lb[0]:.3f}, {pr.ci_ub[0]:.3f}], prediction interval "
            f"[{pr.pi_lb[0]:.3f}, {pr.pi_ub[0]:.3f}]"
        )
    dg = res.diagnostics()
    out.append("")
    out.append(
        f"Fit diagnostics: {dg.verdict} ({dg.iterations} Newton iterations, "
        f"max |gradient| {dg.grad_norm:.1e})"
    )
    for n in dg.notes:
        out.append(f"Note: {n}")
    return "\n".join(out) + "\n"


def _peq(p: float, digits: int) -> str:
    s = format_p(p, digits)
    return s if s.startswith("<") else "= " + s


def _abbrev(x: str, n: int = 4) -> str:
    return x if len(x) <= n else x[:n]


def format_structured_components(res, digits: int = 4) -> list[str]:
    """The 'Variance Components' section of metafor's ``print.rma.mv`` for crossed terms,
    ``R`` matrices and ``~ inner | outer`` terms (tau^2/rho and gamma^2/phi tables with the
    number of levels, rows per inner level and, for UN, the pairs' co-occurrence counts)."""
    from mlmeta.structures import co_occurrence, k_per_level

    f = f"{{:.{digits}f}}"
    out = ["Variance Components:" + ("" if res.data.info else " none"), ""]
    est = res.core.estimates()
    sig = [(e, i) for e, i in zip(est, res.data.info) if e.kind == "sigma2"]
    if sig:
        with_R = any(i.has_R for _, i in sig)
        rows = []
        for e, i in sig:
            r = [
                f.format(e.sigma2),
                f.format(np.sqrt(e.sigma2)),
                str(e.n_levels[0]),
                "yes" if e.tau2_fixed[0] else "no",
                i.name,
            ]
            if with_R:
                r.append("yes" if i.has_R else "no")
            rows.append(r)
        hdr = ["estim", "sqrt", "nlvls", "fixed", "factor"] + (["R"] if with_R else [])
        idx = ["sigma^2"] if len(sig) == 1 else [f"sigma^2.{j + 1}" for j in range(len(sig))]
        out.append(_table(rows, hdr, idx))
        out.append("")
    terms = [t for t in res.data.terms if not hasattr(t, "codes")]
    io = [(e, i) for e, i in zip(est, res.data.info) if e.kind == "inner_outer"]
    for j, ((e, info), term) in enumerate(zip(io, terms)):
        vsym, rsym = ("tau^2", "rho") if j == 0 else ("gamma^2", "phi")
        w = max(len(info.inner), len(info.outer))
        out.append(f"outer factor: {info.outer.ljust(w)} (nlvls = {e.n_levels[1]})")
        out.append(f"inner factor: {info.inner.ljust(w)} (nlvls = {len(info.levels)})")
        out.append("")
        lv = [str(x) for x in info.levels]
        kl = k_per_level(term.inner, len(lv))
        yn = ["yes" if x else "no" for x in e.tau2_fixed]
        ryn = ["yes" if x else "no" for x in e.rho_fixed]
        if info.struct in ("CS", "AR", "ID"):
            rows = [[f.format(e.tau2[0]), f.format(np.sqrt(e.tau2[0])), yn[0]]]
            idx = [vsym]
            if info.struct != "ID":
                rows.append([f.format(e.rho[0]), "", ryn[0]])
                idx.append(rsym)
            out.append(_table(rows, ["estim", "sqrt", "fixed"], idx))
        elif info.struct in ("HCS", "HAR", "DIAG"):
            rows = [
                [f.format(t), f.format(np.sqrt(t)), str(kl[a]), yn[a], lv[a]]
                for a, t in enumerate(e.tau2)
            ]
            idx = [f"{vsym}.{a + 1}" for a in range(len(e.tau2))] if len(e.tau2) > 1 else [vsym]
            if info.struct != "DIAG":
                rows.append([f.format(e.rho[0]), "", "", ryn[0], ""])
                idx.append(rsym)
            out.append(_table(rows, ["estim", "sqrt", "k.lvl", "fixed", "level"], idx))
        else:  # UN
            rows = [
                [f.format(t), f.format(np.sqrt(t)), str(kl[a]), yn[a], lv[a]]
                for a, t in enumerate(e.tau2)
            ]
            idx = [f"{vsym}.{a + 1}" for a in range(len(e.tau2))] if len(e.tau2) > 1 else [vsym]
            out.append(_table(rows, ["estim", "sqrt", "k.lvl", "fixed", "level"], idx))
            if len(lv) > 1:
                out.append("")
                m = len(lv)
                occ = co_occurrence(term)
                cor = np.eye(m)
                fixed = np.zeros((m, m), dtype=bool)
                pairs = [(a, b) for a in range(m) for b in range(a + 1, m)]
                for q, (a, b) in enumerate(pairs):
                    cor[a, b] = cor[b, a] = e.rho[q]
                    fixed[a, b] = fixed[b, a] = e.rho_fixed[q]
                rows = []
                for ri in range(m):
                    cells = [
                        ("1" if c == ri else f.format(cor[ri, c])) if c <= ri else ""
                        for c in range(m)
                    ]
                    info_cells = [
                        "-"
                        if c == ri
                        else (("yes" if fixed[ri, c] else "no") if c < ri else str(int(occ[ri, c])))
                        for c in range(m)
                    ]
                    rows.append(cells + [""] + info_cells)
                hdr = [f"{rsym}.{_abbrev(x)}" for x in lv] + [""] + [_abbrev(x) for x in lv]
                out.append(_table(rows, hdr, lv))
        out.append("")
    return out

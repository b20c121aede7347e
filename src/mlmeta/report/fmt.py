"""Numbers in APA style: the minus sign "−", no leading zero for quantities bounded by 1
(r, p, SE of r), "p < .001" below .001, three decimals by default. A number that is not
defined (None, NaN) is written "not defined": never "NA" or "nan"."""

from __future__ import annotations

import math

__all__ = [
    "MINUS",
    "apa_estimate",
    "ci_text",
    "coef_digits",
    "count",
    "df_text",
    "level_text",
    "num",
    "p_text",
    "pct",
    "pval",
]

MINUS = "\u2212"
UNDEFINED = "not defined"


def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def num(x, digits: int = 3, bounded: bool = False) -> str:
    """``x`` rounded to ``digits`` with a true minus sign; ``bounded``: no leading zero."""
    if not _finite(x):
        if isinstance(x, (int, float)) and math.isinf(x):
            return "∞" if x > 0 else MINUS + "∞"
        return UNDEFINED
    s = f"{float(x):.{digits}f}"
    if float(s) == 0:
        s = s.lstrip("-")
    if bounded:
        if s.startswith("0."):
            s = s[1:]
        elif s.startswith("-0."):
            s = "-" + s[2:]
    return s.replace("-", MINUS)


def coef_digits(se, minimum: int = 3, maximum: int = 8) -> int:
    """Decimals that show a coefficient with standard error ``se`` to about 2 significant
    digits of its SE (3 unless the SE is below .01: a slope per participant, per year...)."""
    if not _finite(se) or float(se) <= 0:
        return minimum
    return int(min(maximum, max(minimum, 1 - math.floor(math.log10(float(se))))))


def pval(p, digits: int = 3) -> str:
    """The p-value without 'p': '< .001', '= .035', '> .999'."""
    if not _finite(p):
        return UNDEFINED
    p = float(p)
    small = 10**-digits
    if p < small:
        return "< " + num(small, digits, bounded=True)
    if round(p, digits) >= 1:
        return "> ." + "9" * digits
    return "= " + num(p, digits, bounded=True)


def p_text(p, digits: int = 3) -> str:
    """'p = .034', 'p < .001'; 'p not defined' when there is none."""
    return "p " + pval(p, digits)


def df_text(df) -> str:
    if not _finite(df):
        return UNDEFINED
    df = float(df)
    if abs(df - round(df)) < 1e-8:
        return str(round(df))
    return f"{df:.2f}"


def level_text(level: float) -> str:
    return (str(int(level)) if float(level).is_integer() else f"{level:g}") + "%"


def ci_text(lb, ub, digits: int = 3, bounded: bool = False) -> str:
    return f"[{num(lb, digits, bounded)}, {num(ub, digits, bounded)}]"


def count(n) -> str:
    """Integer with thousands separators ('6,334')."""
    return f"{int(n):,}"


def pct(x, digits: int = 1) -> str:
    return num(x, digits) + "%"


def apa_estimate(
    label: str,
    est,
    se,
    lb,
    ub,
    stat_name: str,
    df,
    stat,
    p,
    level: float = 95,
    bounded: bool = False,
    digits: int = 3,
) -> str:
    """'r = −.123, SE = .020, 95% CI [−.164, −.082], t(26) = −6.127, p < .001'."""
    parts = [f"{label} = {num(est, digits, bounded)}"]
    if _finite(se):
        parts.append(f"SE = {num(se, digits, bounded)}")
    parts.append(f"{level_text(level)} CI {ci_text(lb, ub, digits, bounded)}")
    if stat_name:
        st = f"{stat_name}({df_text(df)})" if df is not None and stat_name == "t" else stat_name
        parts.append(f"{st} = {num(stat, digits)}")
    if p is not None:
        parts.append(p_text(p))
    return ", ".join(parts)

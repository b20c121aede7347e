"""Shared helpers for the test suite: reference cases and tolerance checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

HERE = Path(__file__).parent
REF = HERE / "fixtures" / "reference"
REF_EXTRA = HERE / "fixtures" / "reference_extra"

CORE_KEYS = [
    "k",
    "p",
    "n_levels",
    "sigma2",
    "beta",
    "se",
    "stat",
    "df",
    "pval",
    "ci_lb",
    "ci_ub",
    "vcov",
    "QE",
    "QE_df",
    "QEp",
    "QM",
    "QM_df",
    "QMp",
    "logLik",
    "deviance",
    "AIC",
    "BIC",
    "AICc",
    "predict",
    "predict_r",
]
SKIP_KEYS = {"notes", "metafor"}


def case_files(root: Path = REF) -> list[Path]:
    return sorted((root / "cases").glob("*.json"))


def load_case(path: Path) -> dict:
    return json.loads(path.read_text())


def case_data(case: dict, root: Path = REF) -> pd.DataFrame:
    return pd.read_csv(root / "data" / case["data"])


def compare(exp, got, rel, abs_, path="", diffs=None):
    """Recursive comparison with |got - exp| <= max(abs, rel |exp|); returns the differences."""
    diffs = [] if diffs is None else diffs
    if exp is None:
        if (
            got not in (None, [], {})
            and not (isinstance(got, float) and math.isnan(got))
            and not (isinstance(got, list) and all(g is None for g in got))
        ):
            diffs.append(f"{path}: expected null, got {got!r}")
        return diffs
    if got is None:
        diffs.append(f"{path}: missing (expected {exp!r})")
        return diffs
    if isinstance(exp, dict):
        if not isinstance(got, dict):
            diffs.append(f"{path}: expected an object, got {got!r}")
            return diffs
        for k, v in exp.items():
            if k not in SKIP_KEYS:
                compare(v, got.get(k), rel, abs_, f"{path}.{k}", diffs)
        return diffs
    if isinstance(exp, list):
        if not isinstance(got, (list, tuple)):
            got = [got]
        if len(exp) != len(got):
            diffs.append(f"{path}: length {len(got)} != {len(exp)}")
            return diffs
        for i, (e, g) in enumerate(zip(exp, got)):
            compare(e, g, rel, abs_, f"{path}[{i}]", diffs)
        return diffs
    if isinstance(exp, str):
        if str(got) != exp:
            diffs.append(f"{path}: {got!r} != {exp!r}")
        return diffs
    if isinstance(got, (list, tuple)) and len(got) == 1:
        got = got[0]
    g = float(got)
    e = float(exp)
    if math.isnan(e) and math.isnan(g):
        return diffs
    if not abs(g - e) <= max(abs_, rel * abs(e)):
        diffs.append(f"{path}: {g!r} != expected {e!r}")
    return diffs


def tolerance(case: dict, block: str | None = None) -> tuple[float, float]:
    tol = dict(case.get("tolerance", {}))
    if block is not None:
        tol.update(tol.get("by_block", {}).get(block, {}))
    return tol.get("rel", 1e-5), tol.get("abs", 1e-7)


@pytest.fixture(scope="session")
def ref_root() -> Path:
    return REF

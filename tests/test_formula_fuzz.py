"""Fuzzing the moderator-formula front end: whatever the text, the result is a fit or an
mlmeta error (never another exception, never code execution), and it is quick."""

from __future__ import annotations

import time
import warnings

import pandas as pd
import pytest
from conftest import REF
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmeta import rma_mv
from mlmeta.errors import MlmetaError

DATA = pd.read_csv(REF / "data" / "alliance_like.csv")
TOKENS = [
    "phase",
    "rater",
    "ni",
    "ri",
    "study",
    "factor(",
    "C(",
    "I(",
    "poly(",
    "log(",
    "exp(",
    "sqrt(",
    "abs(",
    "scale(",
    "(",
    ")",
    "+",
    "-",
    "*",
    "/",
    ":",
    "^",
    "**",
    ",",
    "0",
    "1",
    "2",
    "3.5",
    "1e3",
    " ",
    "~",
    "`ni`",
    "`x y`",
    "'a'",
    '"',
    "[",
    "]",
    ".",
    "__",
    "os",
    "import",
    "lambda",
    "=",
    "|",
    "%in%",
    "\\",
    "€",
    "\n",
]


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=12))
def test_any_formula_gives_a_fit_or_an_mlmeta_error(tokens):
    text = "".join(tokens)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = rma_mv(DATA, random="study/es", mods=text)
        except MlmetaError as exc:
            msg = str(exc)
            assert msg and "\n" not in msg.strip()
        else:
            assert res.k > 0 and len(res.coef_names) == res.p
    assert time.perf_counter() - t0 < 5.0


@pytest.mark.parametrize(
    "text",
    [
        "~ __import__('os').system('touch /tmp/mlmeta_fuzz_pwned')",
        "~ phase.__class__.__mro__",
        "~ (lambda: 1)()",
        "~ I(open('/etc/passwd').read())",
        "~ eval('1')",
        "~ globals()",
        "~ I(9**9**9)",
    ],
)
def test_code_in_formulas_is_refused(text, tmp_path):
    with pytest.raises(MlmetaError):
        rma_mv(DATA, random="study/es", mods=text)

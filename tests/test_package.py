"""Package-level behaviour: fast, light import; lazy entry points; docstrings everywhere."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import mlmeta


def test_import_is_light():
    code = (
        "import sys, mlmeta; print(sorted(m for m in ('numpy', 'pandas', 'scipy', "
        "'matplotlib', 'formulaic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lazy_entry_points():
    assert callable(mlmeta.rma_mv) and mlmeta.fit is mlmeta.rma_mv
    assert callable(mlmeta.escalc) and callable(mlmeta.load_example)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mlmeta.nope  # noqa: B018


MODULES = [
    "mlmeta.model",
    "mlmeta.results",
    "mlmeta.effects",
    "mlmeta.analyses.heterogeneity",
    "mlmeta.analyses.profile",
    "mlmeta.analyses.lrt",
    "mlmeta.analyses.robust",
    "mlmeta.analyses.influence",
    "mlmeta.pubbias.egger",
    "mlmeta.pubbias",
    "mlmeta.analyses.che",
    "mlmeta.analyses.diagnostics",
    "mlmeta.plots",
    "mlmeta.core.fit",
    "mlmeta.core.likelihood",
    "mlmeta.core.optimize",
    "mlmeta.core.inference",
    "mlmeta.core.robust",
    "mlmeta.core.dense",
    "mlmeta.core.structure",
]


@pytest.mark.parametrize("modname", MODULES)
def test_public_functions_have_docstrings(modname):
    mod = importlib.import_module(modname)
    assert mod.__doc__ and len(mod.__doc__) > 40
    for name in getattr(mod, "__all__", []):
        obj = getattr(mod, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, f"{modname}.{name} has no docstring"


def test_notebook_display_shows_summary_and_coefficients():
    import pandas as pd
    from conftest import REF

    d = pd.read_csv(REF / "data" / "konstantopoulos2011.csv")
    res = mlmeta.rma_mv(d, random="district/school")
    html = res._repr_html_()
    assert html.startswith("<pre>Multivariate Meta-Analysis Model (k = 56; method: REML)")
    assert "<table" in html and "0.1847" in html
    assert "district/school" in repr(res)

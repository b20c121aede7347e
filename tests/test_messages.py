"""Every error message is pinned: one test per raise site of an mlmeta error that no other test
pins with ``match=`` (or, for the command line, by the one ``mlmeta: error:`` line it prints),
or pins only by a generic word ("not found", "rho"); here the whole message is pinned.

Most messages are triggered through the public API (or ``mlmeta.cli.main``). A few raise sites
are defensive and cannot be reached that way; they are triggered through the internal function
(or by simulating the failure with ``monkeypatch``) and say so in their comment.

A new raise site gets its message pinned here or in the test of its module.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import mlmeta
from mlmeta import effects, pubbias
from mlmeta.cli import main
from mlmeta.errors import ConvergenceError, DataWarning, FormulaError, InputError, MlmetaError
from mlmeta.io import analysis, read_table
from mlmeta.io.analysis import AnalysisError
from mlmeta.pubbias import egger as bias

HERE = Path(__file__).parent
DATA = HERE / "fixtures" / "reference" / "data"
KONST = DATA / "konstantopoulos2011.csv"
ALLIANCE = DATA / "alliance_like.csv"  # SIMULATED data
SRC = HERE.parent / "src" / "mlmeta"


def exact(msg: str) -> str:
    """A ``match=`` pattern for the whole message, literally."""
    return "^" + re.escape(msg) + "$"


def cli_error(args: list[str]) -> str:
    """Run the command line in-process; it must refuse with one line on stderr and exit 2.
    Returns the message after ``mlmeta: error: ``."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(args)
    assert code == 2, (code, err.getvalue())
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlmeta: error: "), err.getvalue()
    return lines[0][len("mlmeta: error: ") :]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mlmeta.MlmetaWarning)
        yield


@pytest.fixture(scope="module")
def konst() -> pd.DataFrame:
    return pd.read_csv(KONST)


@pytest.fixture(scope="module")
def alliance() -> pd.DataFrame:
    return pd.read_csv(ALLIANCE)


@pytest.fixture(scope="module")
def res3(konst):
    """Three-level model: district/school."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlmeta.rma_mv(konst, "yi", "vi", random="district/school")


@pytest.fixture(scope="module")
def res_ee(konst):
    """Equal-effects model: no random effects."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlmeta.rma_mv(konst, "yi", "vi")


def fit(df, **kw):
    return mlmeta.rma_mv(df, "yi", "vi", **kw)


# ------------------------------------------------------------------------------------------------
# mlmeta.model
# ------------------------------------------------------------------------------------------------


def test_level_not_a_number(konst):
    with pytest.raises(
        InputError, match=exact("level must be a number (a percentage such as 95); got 'abc'")
    ):
        fit(konst, level="abc")


def test_rho_cluster_not_found(konst):
    with pytest.raises(InputError, match=exact("rho_cluster column 'nope' not found in the data")):
        fit(konst, rho=0.5, rho_cluster="nope")


def test_rho_cluster_with_missing_values(konst):
    df = konst.assign(g=np.where(np.arange(len(konst)) == 3, np.nan, 1.0))
    with pytest.raises(InputError, match=exact("rho_cluster column 'g' has missing values")):
        fit(df, rho=0.5, rho_cluster="g")


def test_refit_with_as_many_coefficients_as_rows(konst):
    # egger() adds sqrt(vi) as a moderator: 2 rows, 2 coefficients
    res = fit(konst.iloc[:2])
    with pytest.raises(InputError, match=exact("2 effect sizes are too few for 2 coefficients")):
        res.egger()


# ------------------------------------------------------------------------------------------------
# mlmeta.io.prepare
# ------------------------------------------------------------------------------------------------


def test_random_empty_level_name(konst):
    with pytest.raises(
        InputError,
        match=exact("random='district//school': empty level name; write e.g. 'study/es'"),
    ):
        fit(konst, random="district//school")


def test_data_not_a_dataframe():
    with pytest.raises(InputError, match=exact("data must be a pandas DataFrame, got list")):
        mlmeta.rma_mv([1, 2], "yi", "vi")


def test_yi_none(konst):
    with pytest.raises(
        InputError, match=exact("yi must be a column name or a 1-d array, got None")
    ):
        mlmeta.rma_mv(konst, None, "vi")


def test_yi_two_dimensional(konst):
    with pytest.raises(
        InputError,
        match=exact("yi must be a column name or a 1-d array, got an array of shape (56, 2)"),
    ):
        mlmeta.rma_mv(konst, np.zeros((56, 2)), "vi")


def test_yi_wrong_length(konst):
    with pytest.raises(InputError, match=exact("yi has 3 values but the data has 56 rows")):
        mlmeta.rma_mv(konst, np.zeros(3), "vi")


def test_first_coefficient_zero_in_every_row(konst):
    with pytest.raises(
        InputError,
        match=exact(
            "moderator formula '~ 0 + z': coefficient 'z' is 0 in every row, so it cannot be "
            "estimated"
        ),
    ):
        fit(konst.assign(z=0.0), mods="~ 0 + z")


def test_later_coefficient_zero_in_every_row(konst):
    # metafor drops it ("Redundant predictors dropped from the model.") and fits the rest
    with pytest.warns(
        DataWarning,
        match=exact(
            "moderator formula '~ year + z': redundant predictors dropped from the model, as "
            "metafor does: 'z' (0 in every row)"
        ),
    ):
        res = fit(konst.assign(z=0.0), mods="~ year + z")
    assert res.coef_names == ("intrcpt", "year")


def test_check_column_needs_a_name(konst):
    # unreachable through the API (only strings get here); the check itself, directly
    from mlmeta.io.prepare import _check_column

    with pytest.raises(InputError, match=exact("yi must be a column name or a 1-d array, got 3")):
        _check_column(konst, 3, "yi")


# ------------------------------------------------------------------------------------------------
# mlmeta.io.formula
# ------------------------------------------------------------------------------------------------


def test_formula_not_a_string(konst):
    with pytest.raises(
        FormulaError, match=exact("moderator formula must be a string such as '~ year', got int")
    ):
        fit(konst, mods=3)


def test_formula_new_data_cannot_be_evaluated(konst):
    res = fit(konst, random="district/school", mods="~ log(year)")
    with pytest.raises(
        FormulaError,
        match="^"
        + re.escape(
            "moderator formula '~ log(year)' could not be evaluated for the new data: Unable to "
            "evaluate factor `log(year)`."
        ),
    ):
        res.predict(pd.DataFrame({"year": ["abc"]}))


def test_formula_nested_too_deeply(konst, monkeypatch):
    # defensive: the parser bounds the nesting before formulaic sees it; simulate formulaic
    # running out of stack
    import formulaic

    def deep(*a, **k):
        raise RecursionError

    monkeypatch.setattr(formulaic, "model_matrix", deep)
    with pytest.raises(
        FormulaError, match=exact("moderator formula '~ year' is nested too deeply")
    ):
        fit(konst, mods="~ year")


def test_formula_wrong_number_of_rows(konst, monkeypatch):
    # defensive: formulaic keeps every row (na_action="ignore"); simulate a short model matrix
    import formulaic

    monkeypatch.setattr(
        formulaic, "model_matrix", lambda *a, **k: pd.DataFrame({"Intercept": [1.0], "year": [1.0]})
    )
    with pytest.raises(
        FormulaError, match=exact("moderator formula '~ year' did not give one row per effect size")
    ):
        fit(konst, mods="~ year")


# ------------------------------------------------------------------------------------------------
# mlmeta.effects
# ------------------------------------------------------------------------------------------------

# Not tested: the "must be one-dimensional" raised when a list cannot be stored element by
# element in _to_float (the ValueError branch) is unreachable: numpy stores any list of
# len(values) items, so the other one-dimensional check below it reports nested lists.


def test_escalc_cell_complex_number():
    with pytest.raises(
        InputError, match=exact("column 'ni', row 2: value must be numeric, got (3+1j)")
    ):
        mlmeta.escalc("ZCOR", ri=[0.1, 0.2], ni=[10, 3 + 1j])


def test_escalc_cell_of_another_type():
    with pytest.raises(
        InputError, match=exact("column 'ni', row 2: value must be numeric, got b'x'")
    ):
        mlmeta.escalc("ZCOR", ri=[0.1, 0.2], ni=[10, b"x"])


def test_escalc_two_dimensional_array():
    with pytest.raises(
        InputError, match=exact("column 'ni' must be one-dimensional, got shape (2, 2)")
    ):
        mlmeta.escalc("ZCOR", ri=[0.1, 0.2], ni=np.array([[10, 11], [12, 13]]))


def test_escalc_mapping_not_a_frame():
    with pytest.raises(
        InputError,
        match=exact(
            "data could not be turned into a DataFrame: All arrays must be of the same length"
        ),
    ):
        mlmeta.escalc("ZCOR", {"a": [0.1, 0.2], "b": [10]}, ri="a", ni="b")


def test_escalc_duplicated_column():
    df = pd.DataFrame([[0.1, 10, 11]], columns=["r", "n", "n"])
    with pytest.raises(
        InputError, match=exact("column 'n' (argument 'ni') appears more than once in the data")
    ):
        mlmeta.escalc("ZCOR", df, ri="r", ni="n")


def test_escalc_argument_is_a_dataframe():
    with pytest.raises(
        InputError,
        match=exact("argument 'ri' must be a column name or a 1-d array, got a DataFrame"),
    ):
        mlmeta.escalc("ZCOR", ri=pd.DataFrame({"a": [0.1]}), ni=[10])


def test_escalc_add_not_a_number():
    with pytest.raises(InputError, match=exact("add='x': must be a number")):
        mlmeta.escalc("ZCOR", ri=[0.1], ni=[10], add="x")


def test_escalc_drop_missing_not_a_bool():
    with pytest.raises(InputError, match=exact("drop_missing='yes': must be True or False")):
        mlmeta.escalc("ZCOR", ri=[0.1], ni=[10], drop_missing="yes")


def test_escalc_or_needs_di_or_n2i():
    with pytest.raises(InputError, match=exact("measure 'OR' requires argument 'di' or 'n2i'")):
        mlmeta.escalc("OR", ai=[1], bi=[2], ci=[1])


@pytest.mark.parametrize(
    "z",
    [pd.Series([True, False]), [0.1, True], np.array([True, False])],
    ids=["series", "list", "array"],
)
def test_conversion_booleans(z):
    with pytest.raises(
        InputError, match=exact("argument 'z' must be numeric, got true/false values")
    ):
        effects.ztor(z)


def test_conversion_scalar_boolean():
    with pytest.raises(InputError, match=exact("argument 'z' must be numeric, got True")):
        effects.ztor(True)


# ------------------------------------------------------------------------------------------------
# mlmeta.core.fit, mlmeta.core.dense, mlmeta.core.optimize
# ------------------------------------------------------------------------------------------------


def test_core_method():
    # rma_mv normalises the method first; the core check, directly
    from mlmeta.core.fit import fit_nested

    with pytest.raises(InputError, match=exact("method must be one of REML, ML; got 'FOO'")):
        fit_nested([0.1, 0.2, 0.3], [0.01, 0.01, 0.01], np.ones((3, 1)), [], method="FOO")


def test_design_not_of_full_rank(konst):
    # with equal sampling variances, the sqrt(vi) that egger() adds is collinear with the
    # intercept
    res = fit(konst.assign(vi=0.02), random="district/school")
    with pytest.raises(
        InputError,
        match=exact(
            "the design matrix is not of full rank: some moderators are constant or perfectly "
            "collinear"
        ),
    ):
        res.egger()


def test_rho_out_of_range(konst):
    with pytest.raises(
        InputError,
        match=exact(
            "rho must lie strictly between -1 and 1 (a correlation of ±1 makes the sampling "
            "covariance singular); got 1.5"
        ),
    ):
        fit(konst, random="district/school", rho=1.5)


def test_sigma2_wrong_length(konst):
    with pytest.raises(
        InputError, match=exact("sigma2 has 1 entries but the model has 2 random-effect levels")
    ):
        fit(konst, random="district/school", sigma2=[None])


def test_sigma2_negative(konst):
    with pytest.raises(InputError, match=exact("sigma2[2] must be a finite value >= 0; got -1.0")):
        fit(konst, random="district/school", sigma2=[None, -1.0])


def test_rho_cluster_cuts_across_outer_level(konst):
    with pytest.raises(
        InputError,
        match=exact(
            "the clusters of correlated sampling errors cut across the outer random level; use a "
            "cluster that contains, or lies within, each outer group"
        ),
    ):
        fit(
            konst.assign(g=np.arange(len(konst)) % 2),
            random="district/school",
            rho=0.5,
            rho_cluster="g",
        )


def _nonfinite(theta, order):
    n = len(theta)
    return SimpleNamespace(ll=float("nan"), grad=np.zeros(n), hess=np.zeros((n, n)))


def test_convergence_error_lists_what_was_tried():
    from mlmeta.core.optimize import maximize

    starts = [np.array([0.1, 0.2]), np.array([0.3, 0.4])]
    with pytest.raises(
        ConvergenceError,
        match="^"
        + re.escape(
            "the likelihood could not be maximised; tried: "
            "Newton from start 1 (0.1, 0.2): non-finite log-likelihood at the start; "
            "Newton from start 2 (0.3, 0.4): non-finite log-likelihood at the start; "
            "L-BFGS-B on sqrt(sigma2): "
        )
        + r"[^;]+"
        + re.escape("; Newton polish: non-finite log-likelihood at the start")
        + "$",
    ):
        maximize(_nonfinite, starts, np.array([True, True]))


def test_convergence_error_all_components_fixed():
    from mlmeta.core.optimize import maximize

    with pytest.raises(
        ConvergenceError,
        match=exact("log-likelihood is not finite at the fixed variance components"),
    ):
        maximize(_nonfinite, [np.array([0.1])], np.array([False]))


# ------------------------------------------------------------------------------------------------
# mlmeta.core.robust (the cluster-robust engine, called directly)
# ------------------------------------------------------------------------------------------------


X4 = np.ones((4, 1))
CL4 = np.array([0, 0, 1, 1])
B2 = [np.eye(2), np.eye(2)]


def _robust(X=X4, beta=(0.0,), resid=None, cluster=CL4, blocks=B2, **kw):
    from mlmeta.core.robust import robust_test

    resid = np.zeros(len(X)) if resid is None else resid
    return robust_test(X, list(beta), resid, cluster, blocks, **kw)


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"type": "CR3"}, "type: expected 'CR1' or 'CR2', got 'CR3'"),
        ({"level": 95}, "level: expected a value in (0, 1), got 95"),
        (
            {"X": np.ones((4, 1, 1))},
            "X: expected a 2-D design matrix, got an array of shape (4, 1, 1)",
        ),
        ({"beta": (0.0, 0.0)}, "beta: expected 1 coefficients (columns of X), got 2"),
        ({"resid": np.zeros(3)}, "resid: expected 4 residuals (rows of X), got 3"),
        (
            {"cluster": np.array([0, 0, 1])},
            "cluster: expected 4 integer codes (rows of X), got shape (3,)",
        ),
        ({"cluster": np.array([0, 0, 0.5, 1])}, "cluster: codes must be integers 0..C-1"),
        (
            {"X": np.ones((0, 1)), "resid": np.zeros(0), "cluster": np.zeros(0, dtype=int)},
            "X: no rows",
        ),
        ({"cluster": np.array([-1, 0, 0, 1])}, "cluster: codes must be integers 0..C-1, found -1"),
        ({"blocks": B2 + [np.eye(1)]}, "V_blocks: expected one block per cluster (2), got 3"),
        (
            {"cluster": np.array([0, 0, 2, 2]), "blocks": B2 + [np.eye(2)]},
            "cluster: code 1 has no rows; codes must be 0..C-1 with every code used",
        ),
        ({"resid": np.array([0.0, np.nan, 0.0, 0.0])}, "X, beta and resid must be finite"),
        ({"btt": [5]}, "btt: expected coefficient indices in 0..0, got [5]"),
        (
            {"X": np.ones((4, 2)), "beta": (0.0, 0.0)},
            "cluster: the number of clusters (2) must be larger than the number of coefficients (2)",
        ),
        ({"bread": np.eye(2)}, "bread: expected a 1 x 1 matrix, got shape (2, 2)"),
        (
            {"blocks": [np.eye(2), np.eye(3)]},
            "V_blocks: block of cluster 1 has shape (3, 3), expected (2, 2) (the cluster has 2 rows)",
        ),
        (
            {"blocks": [np.eye(2), -np.eye(2)]},
            "V_blocks: a covariance block is not positive definite (one of the clusters of size 2)",
        ),
        (
            {
                "X": np.ones((6, 2)),
                "beta": (0.0, 0.0),
                "resid": np.zeros(6),
                "cluster": np.array([0, 0, 1, 1, 2, 2]),
                "blocks": [np.eye(2)] * 3,
            },
            "X: X'WX is singular (the design matrix is rank deficient)",
        ),
    ],
    ids=lambda x: x if isinstance(x, str) and len(x) < 40 else None,
)
def test_core_robust_input_errors(kw, msg):
    with pytest.raises(InputError, match=exact(msg)):
        _robust(**kw)


# ------------------------------------------------------------------------------------------------
# mlmeta.results, mlmeta.analyses.robust
# ------------------------------------------------------------------------------------------------


def test_no_cluster_level(res_ee):
    with pytest.raises(
        InputError,
        match=exact("the model has no random effects, so no cluster level; give cluster="),
    ):
        res_ee.robust()


def test_cluster_not_found(res3):
    with pytest.raises(InputError, match=exact("cluster column 'nope' not found in the data")):
        res3.robust(cluster="nope")


def test_cluster_with_missing_values(konst):
    res = fit(
        konst.assign(g=np.where(np.arange(len(konst)) == 3, np.nan, 1.0)), random="district/school"
    )
    with pytest.raises(InputError, match=exact("cluster column 'g' has missing values")):
        res.robust(cluster="g")


def test_cluster_cuts_through_outer_level(konst):
    res = fit(konst.assign(g=np.arange(len(konst)) % 2), random="district/school")
    with pytest.raises(
        InputError,
        match=exact(
            "the cluster variable cuts through groups of the outer random level 'district'; "
            "choose a cluster that contains whole groups"
        ),
    ):
        res.robust(cluster="g")


def test_predict_design_row_of_wrong_width(res3):
    with pytest.raises(
        InputError, match=exact("newmods has 2 columns but the model has 1 coefficients (intrcpt)")
    ):
        res3.predict([[1.0, 2.0]])


def test_predict_transf(res3):
    with pytest.raises(InputError, match=exact("transf must be 'ztor' or 'ztor_int'; got 'log'")):
        res3.predict(transf="log")


def test_robust_type(res3):
    with pytest.raises(InputError, match=exact("type must be one of CR2, CR1; got 'CR3'")):
        res3.robust(type="CR3")


@pytest.fixture(scope="module")
def res_year(konst):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlmeta.rma_mv(konst, "yi", "vi", random="district/school", mods="~ year")


def test_robust_btt_unknown_name(res_year):
    with pytest.raises(InputError, match=exact("btt: 'yr' is not a coefficient (intrcpt, year)")):
        res_year.robust(btt="yr")


def test_robust_btt_out_of_range(res_year):
    with pytest.raises(InputError, match=exact("btt: position 5 is out of range 0..1")):
        res_year.robust(btt=5)


# ------------------------------------------------------------------------------------------------
# mlmeta.pubbias.egger, mlmeta.analyses.heterogeneity, mlmeta.analyses.lrt, mlmeta.analyses.profile, mlmeta.examples
# ------------------------------------------------------------------------------------------------


def test_egger_twice(konst):
    res = fit(konst, mods="~ sqrt(vi)")
    with pytest.raises(InputError, match=exact("the model already has sqrt(vi) as a moderator")):
        res.egger()


def test_robust_egger_without_random_effects(res_ee):
    with pytest.raises(
        InputError, match=exact("robust Egger test needs a cluster level (random effects)")
    ):
        res_ee.egger(robust=True)


def test_pet_peese_with_moderators(res_year):
    with pytest.raises(
        InputError, match=exact("PET-PEESE is defined for the intercept-only model")
    ):
        bias.pet_peese(res_year)


def test_i2_without_random_effects(res_ee):
    with pytest.raises(
        InputError, match=exact("I2 needs random effects; the equal-effects model has none")
    ):
        res_ee.i2()


def test_r2_without_random_effects(res_ee):
    with pytest.raises(
        InputError, match=exact("R2 needs random effects; the equal-effects model has none")
    ):
        res_ee.r2()


def test_r2_without_moderators(res3):
    with pytest.raises(
        InputError, match=exact("R2 needs moderators; this is the intercept-only model")
    ):
        res3.r2()


def test_lrt_drop_without_random_effects(res_ee):
    with pytest.raises(
        InputError, match=exact("the equal-effects model has no variance component to test")
    ):
        res_ee.lrt_drop()


def test_anova_of_models_on_different_rows(konst, res3):
    other = fit(konst.iloc[:50], random="district/school")
    with pytest.raises(
        InputError, match=exact("the two models must be fitted to the same effect sizes")
    ):
        mlmeta.anova(res3, other)


def test_profile_without_random_effects(res_ee):
    with pytest.raises(InputError, match=exact("profile likelihood needs random effects")):
        res_ee.profile_ci()


def test_unknown_example():
    from mlmeta.examples import EXAMPLES

    with pytest.raises(
        InputError, match=exact(f"unknown example 'nope'; available: {', '.join(EXAMPLES)}")
    ):
        mlmeta.load_example("nope")


# ------------------------------------------------------------------------------------------------
# mlmeta.pubbias
# ------------------------------------------------------------------------------------------------


Y5 = [0.1, 0.3, 0.2, 0.5, 0.4]
V5 = [0.01, 0.02, 0.03, 0.04, 0.05]


@pytest.mark.parametrize(
    "call, msg",
    [
        (
            lambda pb: pb.rma_uni([0.1, 0.2], [0.01]),
            "yi and vi must have the same length; got 2 and 1",
        ),
        (
            lambda pb: pb.rma_uni([0.1, np.nan], [0.01, 0.02]),
            "yi and vi must be finite (drop missing values first)",
        ),
        (
            lambda pb: pb.rma_uni(Y5, V5, method="XX"),
            "method must be one of REML, ML, DL, EE, FE, CE; got 'XX'",
        ),
        (
            lambda pb: pb.rma_uni(Y5, V5, level=150),
            "level must be a percentage between 0 and 100; got 150",
        ),
        (lambda pb: pb.rma_uni([0.1], [0.01]), "too few estimates (k = 1) to estimate tau^2"),
        (
            lambda pb: pb.aggregate([0.1, 0.2], [0.01, 0.02], [1], 0.5),
            "yi, vi and cluster must have the same length; got 2, 2 and 1",
        ),
        (
            lambda pb: pb.aggregate([0.1, 0.2], [0.01, 0.02], [1, None], 0.5),
            "no missing values allowed in 'cluster'",
        ),
        (lambda pb: pb.aggregate([0.1], [-0.01], [1], 0.5), "vi must be >= 0"),
        (
            lambda pb: pb.aggregate([0.1, 0.2], [0.01, 0.02], [1, 2], [0.5]),
            "length of rho (1) does not match the number of clusters (2)",
        ),
        (
            lambda pb: pb.aggregate([0.1, 0.2], [0.01, 0.02], [1, 2], 1.5),
            "value(s) of rho must be in [-1, 1]",
        ),
        (lambda pb: pb.ranktest([0.1, 0.2], [0.01, 0.02]), "ranktest needs at least 3 estimates"),
        (
            lambda pb: pb.trimfill(Y5, V5, estimator="X0"),
            "estimator must be 'L0', 'R0' or 'Q0'; got 'X0'",
        ),
        (lambda pb: pb.trimfill([0.1], [0.01]), "trim-and-fill needs at least 2 estimates"),
        (lambda pb: pb.trimfill(Y5, V5, side="up"), "side must be 'left' or 'right'; got 'up'"),
        (
            lambda pb: pb.selmodel_stepfun(Y5, V5, method="DL"),
            (
                "selmodel needs a model fitted by ML, REML or EE (metafor refits random-effects models by "
                "ML)"
            ),
        ),
        (
            lambda pb: pb.selmodel_stepfun(Y5, V5, alternative="up"),
            "alternative must be 'greater', 'less' or 'two.sided'; got 'up'",
        ),
        (
            lambda pb: pb.selmodel_stepfun(Y5, V5, steps=[1.5]),
            "steps must be values between 0 and 1",
        ),
        (
            lambda pb: pb.selmodel_stepfun([0.1, 0.2], [0.01, 0.02]),
            "number of studies (k = 2) is too small to fit the selection model",
        ),
    ],
)
def test_pubbias_input_errors(call, msg):
    with pytest.raises(InputError, match=exact(msg)):
        call(pubbias)


def test_pubbias_vi_not_positive():
    # the value is echoed as numpy prints it (np.float64(0.0) with numpy >= 2)
    with pytest.raises(
        InputError,
        match="^" + re.escape("vi must be > 0; got vi[1] = ") + r"(np\.float64\()?0\.0\)?$",
    ):
        pubbias.rma_uni([0.1, 0.2], [0.01, 0.0])


def test_aggregate_not_positive_definite():
    with pytest.raises(
        InputError,
        match="^"
        + re.escape("V is not positive definite in cluster ")
        + r"(np\.str_\()?'a'\)?"
        + re.escape("; cannot aggregate (lower rho?)")
        + "$",
    ):
        pubbias.aggregate([0.1, 0.2], [0.01, 0.01], ["a", "a"], 1.0)


def test_aggregate_nothing_left():
    with (
        pytest.warns(DataWarning, match=re.escape("1 row(s) with missing yi or vi dropped")),
        pytest.raises(InputError, match=exact("no rows left to aggregate")),
    ):
        pubbias.aggregate([np.nan], [0.01], [1], 0.5)


def test_selmodel_intervals_without_p_values():
    # every estimate clearly significant: no p-value in (0.025, 1]
    with pytest.raises(
        InputError,
        match=exact("one or more intervals do not contain any observed p-values: (0.025, 1]"),
    ):
        pubbias.selmodel_stepfun([1.0, 1.2, 0.9, 1.1], [0.01] * 4)


def test_fisher_scoring_does_not_converge():
    with pytest.raises(
        ConvergenceError,
        match=exact("Fisher scoring for tau^2 (REML) did not converge in 0 iterations"),
    ):
        pubbias.rma_uni(Y5, V5, maxiter=0)


def test_trimfill_does_not_converge():
    with pytest.raises(ConvergenceError, match=exact("trim-and-fill algorithm did not converge")):
        pubbias.trimfill(Y5, V5, maxiter=0)


def test_trimfill_r0_undefined():
    # all estimates equal: none lies below the centre
    with pytest.raises(
        ConvergenceError, match=exact("R0 estimator undefined: no estimate below the centre")
    ):
        pubbias.trimfill([0.5] * 5, [0.02] * 5, side="left", estimator="R0")


def test_trimfill_k0_as_large_as_k(monkeypatch):
    # two estimates: after trimming one, the fit of the remaining one can round to just below
    # it (e.g. trimfill([0.274, 0.551], [0.003, 0.115], side="left", method="EE") here), so
    # both centred values are positive and L0 gives k0 = 2; simulate that rounding portably
    from mlmeta.pubbias import trim_fill, univariate

    real = univariate.fit_uni

    def fit_uni(y, v, X, *a, **k):
        out = real(y, v, X, *a, **k)
        if len(y) == 1:
            out["beta"] = out["beta"] - 1e-12
        return out

    monkeypatch.setattr(univariate, "fit_uni", fit_uni)
    with pytest.raises(ConvergenceError, match=exact("trim-and-fill estimated k0 = 2 >= k = 2")):
        trim_fill.trimfill([0.274, 0.551], [0.003, 0.115], side="left", method="EE")


def test_selmodel_likelihood_not_maximised(monkeypatch):
    # defensive: the optimiser returning a non-finite minimum is simulated
    from mlmeta.pubbias import selection as pb

    monkeypatch.setattr(
        pb, "_minimize", lambda fun, x0: (np.asarray(x0), float("inf"), np.zeros(len(x0)))
    )
    with pytest.raises(
        ConvergenceError, match=exact("selection model: the likelihood could not be maximised")
    ):
        pb.selmodel_stepfun([0.1, 0.5, 0.9, 0.05, 0.3], V5)


# ------------------------------------------------------------------------------------------------
# mlmeta.io
# ------------------------------------------------------------------------------------------------


def test_read_table_os_error(tmp_path, monkeypatch):
    p = tmp_path / "locked.csv"
    p.write_text("a,b\n1,2\n")

    def denied(self, *a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "open", denied)  # the reader opens the file once, to sniff it
    with pytest.raises(
        InputError, match=exact(f"cannot read data file {str(p)!r}: {os.strerror(errno.EACCES)}")
    ):
        read_table(p)


def test_read_table_missing_reader_library(tmp_path, monkeypatch):
    p = tmp_path / "d.parquet"
    p.write_bytes(b"PAR1" + b"\x00" * 16 + b"PAR1")

    def no_engine(*a, **k):
        raise ImportError("Missing optional dependency 'pyarrow'.\nUse pip or conda to install it.")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    with pytest.raises(
        InputError,
        match=exact(f"cannot read data file {str(p)!r}: Missing optional dependency 'pyarrow'."),
    ):
        read_table(p)


def test_read_table_bad_utf16(tmp_path):
    p = tmp_path / "u16.csv"
    p.write_bytes(b"\xff\xfea\x00b")  # BOM, then an odd number of bytes
    with pytest.raises(
        InputError,
        match=exact(
            f"data file {str(p)!r} starts with a UTF-16 byte-order mark but is not valid UTF-16; "
            "save it as UTF-8"
        ),
    ):
        read_table(p)


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf"], ids=["no-bytes", "bom-only"])
def test_read_table_empty(tmp_path, content):
    # the empty file is refused before decoding, a BOM-only file after
    p = tmp_path / "e.csv"
    p.write_bytes(content)
    with pytest.raises(InputError, match=exact(f"data file {str(p)!r} is empty")):
        read_table(p)


# ------------------------------------------------------------------------------------------------
# mlmeta.plots
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plotres(alliance):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    df = alliance.assign(
        grp=np.where(np.arange(len(alliance)) == 2, np.nan, 1.0),
        cat=np.where(np.arange(len(alliance)) == 2, None, "x"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlmeta.rma_mv(df, "yi", "vi", random="study/es", measure="ZCOR")


@pytest.fixture()
def plots(plotres):
    import matplotlib.pyplot as plt

    from mlmeta import plots as p

    yield p
    plt.close("all")


def test_forest_transf(plots, plotres):
    with pytest.raises(
        InputError,
        match=exact("transf must be None, 'ztor', 'exp', 'none' or a function; got 'log'"),
    ):
        plots.forest(plotres, transf="log")


def test_forest_sort(plots, plotres):
    with pytest.raises(
        InputError, match=exact("sort must be False, True, 'effect' or 'weight'; got 'abc'")
    ):
        plots.forest(plotres, sort="abc")


def test_forest_study_labels(plots, plotres):
    with pytest.raises(
        InputError,
        match=exact(
            "study_labels must be a column name or a mapping from the study id to its label; "
            "got int"
        ),
    ):
        plots.forest(plotres, study_labels=3)


def test_forest_labels_column_not_found(plots, plotres):
    with pytest.raises(
        InputError,
        match=exact(
            "labels column 'nope' not found in the model's data (columns: study, es, ni, ri, "
            "phase, rater, measure, treatment, yi, vi, grp, cat)"
        ),
    ):
        plots.forest(plotres, labels="nope")


def test_funnel_contours(plots, plotres):
    with pytest.raises(
        InputError, match=exact("contours must be significance levels between 0 and 1; got (1.5,)")
    ):
        plots.funnel(plotres, contours=(1.5,))


def test_funnel_shades(plots, plotres):
    with pytest.raises(InputError, match=exact("shades needs one colour per contour (3); got 1")):
        plots.funnel(plotres, shades=["0.5"])


def test_orchard_missing_values(plots, plotres):
    with pytest.raises(
        InputError, match=exact("moderator 'cat' has missing values among the model's rows")
    ):
        plots.orchard(plotres, "cat")


def test_orchard_too_many_values(plots, plotres):
    n = plotres.data.frame["yi"].nunique()
    with pytest.raises(
        InputError,
        match=exact(
            f"moderator 'yi' has {n} distinct values; the orchard plot is for categorical "
            "moderators (use bubble())"
        ),
    ):
        plots.orchard(plotres, "yi")


def test_bubble_not_numeric(plots, plotres):
    with pytest.raises(
        InputError,
        match=exact("moderator 'phase' is not numeric; use orchard() for a categorical moderator"),
    ):
        plots.bubble(plotres, "phase")


def test_bubble_missing_values(plots, plotres):
    with pytest.raises(
        InputError, match=exact("moderator 'grp' has missing values among the model's rows")
    ):
        plots.bubble(plotres, "grp")


def test_profile_plot_without_random_effects(plots, res_ee):
    with pytest.raises(
        InputError, match=exact("the profile plot needs a model with random effects")
    ):
        plots.profile_plot(res_ee)


def test_profile_plot_all_fixed(plots, konst):
    res = fit(konst, random="district/school", sigma2=[0.01, 0.01])
    with pytest.raises(
        InputError, match=exact("all variance components are fixed; nothing to profile")
    ):
        plots.profile_plot(res)


def test_profile_plot_j_out_of_range(plots, res3):
    with pytest.raises(InputError, match=exact("j must be between 0 and 1; got 5")):
        plots.profile_plot(res3, j=5)


def test_profile_plot_fixed_component(plots, konst):
    res = fit(konst, random="district/school", sigma2=[None, 0.0])
    with pytest.raises(
        InputError,
        match=exact("variance component 1 ('district/school') is fixed; nothing to profile"),
    ):
        plots.profile_plot(res, j=1)


def test_loo_plot_coef_name(plots, res3):
    with pytest.raises(
        InputError, match=exact("coef 'slope' is not a coefficient of the model (intrcpt)")
    ):
        plots.loo_plot(res3, coef="slope")


def test_loo_plot_coef_position(plots, res3):
    with pytest.raises(InputError, match=exact("coef must be between 0 and 0; got 3")):
        plots.loo_plot(res3, coef=3)


def test_save_figure_not_a_figure(plots, tmp_path):
    with pytest.raises(
        InputError, match=exact("save_figure needs a matplotlib Figure or Axes; got str")
    ):
        plots.save_figure("figure", tmp_path / "fig")


def test_save_figure_no_formats(plots, tmp_path):
    import matplotlib.pyplot as plt

    with pytest.raises(InputError, match=exact("formats is empty")):
        plots.save_figure(plt.figure(), tmp_path / "fig", formats=[])


# ------------------------------------------------------------------------------------------------
# mlmeta.io.analysis (analysis files)
# ------------------------------------------------------------------------------------------------


BASE = {
    "data": {"example": "alliance_like"},
    "effect": {"measure": "ZCOR", "ri": "ri", "ni": "ni"},
    "model": {"random": "study/es"},
}


def parse(tables: dict | None = None):
    """Validate BASE updated by ``tables``: a table's keys are added (None removes one); a
    non-table value replaces the table."""
    raw = {k: dict(v) for k, v in BASE.items()}
    for k, v in (tables or {}).items():
        if not isinstance(v, dict):
            raw[k] = v
            continue
        tab = raw.setdefault(k, {})
        for kk, vv in v.items():
            if vv is None:
                tab.pop(kk, None)
            else:
                tab[kk] = vv
    return analysis.parse_analysis(raw, name="a.toml")


@pytest.mark.parametrize(
    "tables, msg",
    [
        ({"model": "x"}, "a.toml: 'model' must be a table ([model]), got a string ('x')"),
        (
            {"effect": {"measure": None, "ri": None, "ni": None, "yi": "yi"}},
            "a.toml: 'effect.vi' is missing: give both effect.yi and effect.vi",
        ),
        (
            {"effect": {"yi": "yi", "vi": "vi"}},
            (
                "a.toml: 'effect.ri' cannot be combined with effect.yi/effect.vi; give either yi and vi "
                "or the escalc columns of effect.measure"
            ),
        ),
        (
            {"effect": {"measure": None, "ri": None, "ni": None, "label": "r"}},
            "a.toml: [effect] needs effect.yi and effect.vi, or effect.measure with its columns",
        ),
        (
            {"model": {"level": 150}},
            "a.toml: 'model.level' must be a percentage between 1 and 100, e.g. 95; got 150",
        ),
        (
            {"model": {"rho_cluster": "study"}},
            "a.toml: 'model.rho_cluster' given without 'model.rho'",
        ),
        (
            {"model": {"random": "study//es"}},
            "a.toml: 'model.random': random='study//es': empty level name; write e.g. 'study/es'",
        ),
        (
            {"model": {"moderators": [" phase"]}},
            "a.toml: 'model.moderators' entries are column names; got ' phase'",
        ),
        ({"analyses": {"che_rhos": []}}, "a.toml: 'analyses.che_rhos' is empty"),
        (
            {"analyses": {"che_rhos": [0.5, 1.5]}},
            (
                "a.toml: 'analyses.che_rhos' values must lie strictly between -1 and 1 (a correlation of "
                "±1 makes the sampling covariance singular); got 1.5"
            ),
        ),
        (
            {"analyses": {"bias_rho": 1.5}},
            (
                "a.toml: 'analyses.bias_rho' must lie strictly between -1 and 1 (a correlation of ±1 "
                "makes the sampling covariance singular); got 1.5"
            ),
        ),
    ],
    ids=lambda x: x.split(": ", 1)[1][:40] if isinstance(x, str) else None,
)
def test_analysis_file_errors(tables, msg):
    with pytest.raises(AnalysisError, match=exact(msg)):
        parse(tables)


def test_analysis_file_not_found(tmp_path):
    p = tmp_path / "nothere.toml"
    with pytest.raises(AnalysisError, match=exact(f"analysis file {str(p)!r} not found")):
        analysis.load_analysis(p)


def test_analysis_file_is_a_directory(tmp_path):
    with pytest.raises(
        AnalysisError, match=exact(f"analysis file {str(tmp_path)!r} is a directory")
    ):
        analysis.load_analysis(tmp_path)


def test_analysis_file_not_utf8(tmp_path):
    p = tmp_path / "a.toml"
    p.write_bytes(b'title = "\xe9t\xe9"\n')
    with pytest.raises(AnalysisError, match=exact(f"{p}: not UTF-8 text")):
        analysis.load_analysis(p)


def test_analysis_file_needs_tomllib(tmp_path, monkeypatch):
    # Python 3.10 has no tomllib; simulated
    p = tmp_path / "a.toml"
    p.write_text("title = 'x'\n")
    monkeypatch.setitem(sys.modules, "tomllib", None)
    with pytest.raises(AnalysisError, match=exact("analysis files need Python >= 3.11 (tomllib)")):
        analysis.load_analysis(p)


# ------------------------------------------------------------------------------------------------
# mlmeta.report
# ------------------------------------------------------------------------------------------------


def test_report_parent_cannot_be_created(tmp_path):
    from mlmeta.report import run_report

    (tmp_path / "afile").write_text("x")
    parent = tmp_path / "afile" / "sub"
    with pytest.raises(
        MlmetaError,
        match=exact(
            f"cannot create the output folder's parent {str(parent)!r}: "
            f"{os.strerror(errno.ENOTDIR)}"
        ),
    ):
        run_report(parse(), parent / "report")


def test_report_parent_not_writable(tmp_path, monkeypatch):
    import tempfile

    from mlmeta.report import run_report

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with pytest.raises(
        MlmetaError, match=exact(f"cannot write in {str(tmp_path)!r}: {os.strerror(errno.EACCES)}")
    ):
        run_report(parse(), tmp_path / "report")


@pytest.fixture()
def project(tmp_path, alliance):
    """An analysis file next to a copy of the alliance-like data with extra columns: a
    one-category moderator and a moderator collinear with 'phase'."""
    df = alliance.assign(site="A", ph2=alliance["phase"].map(lambda s: "z" + str(s)))
    df.to_csv(tmp_path / "a.csv", index=False)

    def write(moderators):
        p = tmp_path / "a.toml"
        p.write_text(
            '[data]\nfile = "a.csv"\n[effect]\nmeasure = "ZCOR"\nri = "ri"\nni = "ni"\n'
            f'[model]\nrandom = "study/es"\nmoderators = {moderators}\n'
            "[analyses]\nprofile = false\nloo = false\ninfluence = false\nbias = false\n"
            "che_sweep = false\nfigures = false\n",
            encoding="utf-8",
        )
        return ["run", str(p), "--out", str(tmp_path / "rep"), "--quiet"]

    return write


def test_report_one_category_moderator(project, tmp_path):
    """A moderator with one category cannot be tested: the report says so and goes on."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(project('["site"]'))
    assert code == 0, err.getvalue()
    got = json.loads((tmp_path / "rep" / "results.json").read_text(encoding="utf-8"))
    msgs = [w["message"] for w in got["warnings"] if w["section"] == "moderator site"]
    assert len(msgs) == 1 and msgs[0].startswith("moderator 'site': it has a single category ")
    assert msgs[0].endswith(" in the data, so it cannot be tested"), msgs


def test_report_joint_moderator_model(project, tmp_path):
    """A joint model with a moderator collinear with another is fitted without the redundant
    column, as metafor does, and the report's warnings say which column went and why."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(project('["phase", "ph2"]'))
    assert code == 0, err.getvalue()
    got = json.loads((tmp_path / "rep" / "results.json").read_text(encoding="utf-8"))
    msgs = [w["message"] for w in got["warnings"]]
    assert (
        "moderator formula '~ phase + ph2': redundant predictors dropped from the model, as "
        "metafor does: 'ph2zlate' (collinear with 'phaselate')"
    ) in msgs, msgs


# ------------------------------------------------------------------------------------------------
# mlmeta.cli
# ------------------------------------------------------------------------------------------------


def test_cli_escalc_column_not_found():
    msg = cli_error(["fit", str(ALLIANCE), "--measure", "ZCOR", "--ri", "r", "--ni", "ni"])
    assert msg == f"column 'r' not found in {str(ALLIANCE)!r}"


def test_cli_sigma2_not_a_number():
    msg = cli_error(
        [
            "fit",
            str(KONST),
            "--yi",
            "yi",
            "--vi",
            "vi",
            "--random",
            "district/school",
            "--sigma2",
            "abc,NA",
        ]
    )
    assert msg == "--sigma2: 'abc' is not a number or NA"

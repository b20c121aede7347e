"""Every one-line error of the random-effects structures code, pinned (those not already pinned
in test_structures_core.py / test_structures_api.py)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mlmeta
from mlmeta.core.fit_general import fit_general
from mlmeta.core.general import GeneralProblem, factor_term, inner_outer_term
from mlmeta.core.sampling import SamplingCov
from mlmeta.errors import InputError, MlmetaWarning
from mlmeta.io.structures import prepare_structured, read_R_csv, read_V_csv
from mlmeta.spec import ModelSpec

DATA = Path(__file__).parent / "fixtures" / "reference_structures" / "data"


def exact(msg: str) -> str:
    return "^" + re.escape(msg) + "$"


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MlmetaWarning)
        yield


@pytest.fixture(scope="module")
def berkey() -> pd.DataFrame:
    return pd.read_csv(DATA / "berkey1998.csv")


@pytest.fixture(scope="module")
def crossed() -> pd.DataFrame:
    return pd.read_csv(DATA / "crossed_lab.csv")  # SIMULATED data


# ---------------------------------------------------------------- core: sampling covariance
def test_sampling_messages():
    with pytest.raises(InputError, match=exact("rho_cluster has 3 values but there are 2 rows")):
        SamplingCov.from_rho([1.0, 1.0], [1, 1, 2], 0.5)
    with pytest.raises(InputError, match=exact("V must be a square matrix; got 2 x 3")):
        SamplingCov.from_matrix(sp.csr_matrix(np.ones((2, 3))))
    with pytest.raises(
        InputError, match=exact("V: entry (row 2, col 1) is not a finite number; got nan")
    ):
        SamplingCov.from_long([0, 1, 1], [0, 0, 1], [1.0, np.nan, 1.0], 2)
    with pytest.raises(InputError, match=exact("V: entry (row 1, col 1) is given more than once")):
        SamplingCov.from_long([0, 0, 1], [0, 0, 1], [1.0, 1.0, 1.0], 2)
    with pytest.raises(InputError, match=exact("V: entry (row 2, col 1) is given more than once")):
        SamplingCov.from_long([0, 1, 0, 1, 1], [0, 0, 1, 0, 1], [1, 0.2, 0.2, 0.2, 1.0], 2)
    lower = np.array([[1.0, 0.0], [0.3, 1.0]])
    with pytest.raises(
        InputError,
        match=exact("V must be symmetric: entry (row 2, col 1) is 0.3 but (row 1, col 2) is 0"),
    ):
        SamplingCov.from_matrix(lower)


# ---------------------------------------------------------------- core: terms and problems
def test_term_and_problem_messages():
    lab = np.array(["a", "b", "a"])
    with pytest.raises(InputError, match=exact("R for lab: 3 level names for a 2 x 2 matrix")):
        factor_term(lab, R=np.eye(2), R_names=["a", "b", "c"], name="lab")
    with pytest.raises(InputError, match=exact("R for lab contains missing or infinite values")):
        factor_term(lab, R=np.array([[1.0, np.nan], [np.nan, 1.0]]), R_names=["a", "b"], name="lab")
    with pytest.raises(
        InputError, match=exact("R for lab: the diagonal entry of level 'b' must be > 0; got 0.0")
    ):
        factor_term(lab, R=np.array([[1.0, 0.0], [0.0, 0.0]]), R_names=["a", "b"], name="lab")
    S = SamplingCov.from_vi([1.0, 1.0, 1.0])
    with pytest.raises(
        InputError, match=exact("the sampling covariance has 3 rows but there are 2 effect sizes")
    ):
        GeneralProblem([0.0, 1.0], np.ones((2, 1)), S, [], reml=True)
    with pytest.raises(
        InputError,
        match=exact(
            "the design matrix is not of full rank: some "
            "moderators are constant or perfectly "
            "collinear"
        ),
    ):
        GeneralProblem([0.0, 1.0, 2.0], np.ones((3, 2)), S, [], reml=True)
    t = factor_term(np.array([1, 2]), name="f")
    with pytest.raises(
        InputError, match=exact("random-effects term 'f' has 2 values but there are 3 rows")
    ):
        GeneralProblem([0.0, 1.0, 2.0], np.ones((3, 1)), S, [t], reml=True)


def test_fixed_value_messages():
    y, X = np.array([0.1, 0.3, 0.2, 0.5]), np.ones((4, 1))
    S = SamplingCov.from_vi(np.full(4, 0.02))
    io = [inner_outer_term(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1]), "CS")]
    with pytest.raises(
        InputError, match=exact("sigma2 was given but the model has no '~ 1 | factor' term")
    ):
        fit_general(y, X, S, io, sigma2=[0.1])
    fac = [factor_term(np.array([0, 0, 1, 1]))]
    with pytest.raises(
        InputError, match=exact("tau2/rho were given but the model has no '~ inner | outer' term")
    ):
        fit_general(y, X, S, fac, tau2=0.1)


# ---------------------------------------------------------------- io: readers and preparation
def test_reader_messages(tmp_path):
    with pytest.raises(
        InputError, match=exact(f"R file for 'phylo' {str(tmp_path / 'x.csv')!r} not found")
    ):
        read_R_csv(tmp_path / "x.csv", "phylo")
    p = tmp_path / "R.csv"
    p.write_text(",a,b\na,1,0.5\nc,0.5,1\n")
    with pytest.raises(
        InputError,
        match=exact(
            f"R file {str(p)!r}: the first column and the "
            "header row must name the same levels; 'b' is in "
            "only one of them"
        ),
    ):
        read_R_csv(p)
    p.write_text(",a,b\na,1,x\nb,0.5,1\n")
    with pytest.raises(
        InputError, match=exact(f"R file {str(p)!r} holds a value that is not a number")
    ):
        read_R_csv(p)
    q = tmp_path / "V.csv"
    q.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match=r"^V file '.*V\.csv' could not be read: "):
        read_V_csv(q)
    q.write_bytes(b"row,col,value\n1,1,0.5\n")
    with pytest.raises(
        InputError,
        match=r"^R file '.*V\.csv' could not be read: |"
        r"^R file '.*' must be square",
    ):
        read_R_csv(q)


def test_preparation_messages(berkey, crossed):
    def prep(data, **kw):
        return prepare_structured(data, ModelSpec.build(yi="yi", vi="vi", **kw))

    with pytest.raises(InputError, match=exact("data must be a pandas DataFrame, got list")):
        prep([1, 2], random=["~ 1 | a", "~ 1 | b"])
    with pytest.raises(
        InputError,
        match=r"^random-effect column 'labx' not found in the data "
        r"\(columns: study, es, lab, ",
    ):
        prep(crossed, random=["~ 1 | study", "~ 1 | labx"])
    d = crossed.copy()
    d.loc[4, "lab"] = None
    with pytest.raises(
        InputError,
        match=exact(
            "random-effect column 'lab', row 5: missing id; "
            "every effect size needs an id in every "
            "random-effects term"
        ),
    ):
        prep(d, random=["~ 1 | study", "~ 1 | lab"])
    with pytest.raises(InputError, match=exact("rho_cluster column 'nope' not found in the data")):
        prep(crossed, random=["~ 1 | study", "~ 1 | lab"], rho=0.5, rho_cluster="nope")
    d = crossed.copy()
    d["cl"] = [None] + list(d["study"].iloc[1:])
    with pytest.raises(InputError, match=exact("rho_cluster column 'cl' has missing values")):
        prep(d, random=["~ 1 | study", "~ 1 | lab"], rho=0.5, rho_cluster="cl")
    R = pd.DataFrame(np.eye(2), index=["a", "b"], columns=["a", "b"])
    with pytest.raises(
        InputError,
        match=exact(
            "R: a correlation matrix is given for 'study/es', "
            "a level of a nested term; R applies to "
            "'~ 1 | factor' terms"
        ),
    ):
        prep(crossed, random=["~ 1 | study/es", "~ 1 | lab"], R={"study/es": R})
    with pytest.raises(
        InputError, match=exact("R for 'lab': the index and the columns must name the same levels")
    ):
        prep(
            crossed,
            random=["~ 1 | study", "~ 1 | lab"],
            R={"lab": pd.DataFrame(np.eye(2), index=["a", "b"], columns=["a", "c"])},
        )
    b3 = berkey.assign(o2=berkey["outcome"], o3=berkey["outcome"])
    with pytest.raises(
        InputError,
        match=exact(
            "at most two '~ inner | outer' terms are allowed (metafor's tau2/rho and gamma2/phi)"
        ),
    ):
        prep(b3, random=["~ outcome | trial", "~ o2 | author", "~ o3 | year"])
    with pytest.raises(
        InputError,
        match=exact(
            "V given as a table must have the columns row, "
            "col, value (1-based data rows); give a square "
            "matrix as a numpy array"
        ),
    ):
        prep(berkey, random="~ outcome | trial", V=pd.DataFrame({"a": [1], "b": [1]}))
    with pytest.raises(InputError, match=exact("V must be a square matrix; got shape (10, 9)")):
        prep(berkey, random="~ outcome | trial", V=np.ones((10, 9)))
    with pytest.raises(InputError, match=exact("V is 3 x 3 but the data has 10 rows")):
        prep(berkey, random="~ outcome | trial", V=np.eye(3))
    with pytest.raises(
        InputError,
        match=exact(
            "V must be a matrix (numpy or scipy.sparse), a "
            "table with columns row, col, value, or a CSV "
            "file; got int"
        ),
    ):
        prep(berkey, random="~ outcome | trial", V=3)


# ---------------------------------------------------------------- results
def test_result_messages(berkey, crossed):
    V = str(DATA / "berkey1998_V.csv")
    res = mlmeta.rma_mv(berkey, "yi", V=V, random="~ outcome | trial", struct="UN")
    with pytest.raises(InputError, match=exact("cluster column 'nope' not found in the data")):
        res.robust(cluster="nope")
    with pytest.raises(InputError, match=exact("type must be one of CR2, CR1; got 'CR3'")):
        res.robust(type="CR3")
    with pytest.raises(
        InputError, match=exact("newmods has 2 columns but the model has 1 coefficients (intrcpt)")
    ):
        res.predict(np.ones((1, 2)))
    with pytest.raises(InputError, match=exact("tau2_levels has 2 entries for 1 predictions")):
        res.predict(np.ones((1, 1)), tau2_levels=["AL", "PD"])
    with pytest.raises(InputError, match=exact("transf must be 'ztor' or 'ztor_int'; got 'exp'")):
        res.predict(transf="exp")
    d = crossed.assign(cl=crossed["study"].astype(float))
    d.loc[0, "cl"] = np.nan
    cr = mlmeta.rma_mv(d, "yi", "vi", random=["~ 1 | study/es", "~ 1 | lab"])
    with pytest.raises(InputError, match=exact("cluster column 'cl' has missing values")):
        cr.robust(cluster="cl")
    few = mlmeta.rma_mv(
        crossed.assign(two=crossed["study"] % 2),
        "yi",
        "vi",
        random=["~ 1 | study/es", "~ 1 | lab"],
        mods="~ dose",
    )
    with pytest.raises(
        InputError,
        match=exact(
            "robust inference needs more clusters than coefficients: 2 clusters for 2 coefficients"
        ),
    ):
        few.robust(cluster="two", type="CR1")


# ---------------------------------------------------------------- command line
def test_cli_R_messages(tmp_path):
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from mlmeta.cli import main

    def err(args):
        o, e = io.StringIO(), io.StringIO()
        with redirect_stdout(o), redirect_stderr(e):
            assert main(args) == 2
        return e.getvalue().strip().removeprefix("mlmeta: error: ")

    base = [
        "fit",
        str(DATA / "crossed_lab.csv"),
        "--yi",
        "yi",
        "--vi",
        "vi",
        "--random",
        "~ 1 | study",
        "--random",
        "~ 1 | lab",
    ]
    assert err(base + ["--R", "lab="]) == "--R expects FACTOR=PATH; got 'lab='"
    r = tmp_path / "R.csv"
    labs = [f"L0{i}" for i in range(1, 9)]
    pd.DataFrame(np.eye(8), index=labs, columns=labs).to_csv(r)
    assert err(base + ["--R", f"lab={r}", "--R", f"lab={r}"]) == "--R: factor 'lab' is given twice"

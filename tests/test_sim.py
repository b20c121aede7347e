"""Simulation engine (mlmeta.sim): seeds, executors, checkpoints, generator, analyses, summaries.

All data here are simulated.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlmeta
from mlmeta import sim
from mlmeta.errors import InputError

HERE = Path(__file__).parent
SIMHELPERS = HERE / "fixtures" / "sim" / "simhelpers.json"

DESIGN = [
    {"J": 6, "mu": 0.2, "tau": 0.1, "omega": 0.05, "rho": 0.5, "k": 3, "sigma2": 0.04},
    {
        "J": 8,
        "mu": 0.0,
        "tau": 0.2,
        "omega": 0.1,
        "rho": 0.3,
        "k": [1, 2, 4],
        "sigma2": [0.02, 0.05],
        "beta_study": 0.1,
    },
]


def mean_analysis(data: pd.DataFrame, condition: dict) -> dict:
    """A cheap picklable analysis: the inverse-variance mean and its z test."""
    w = 1.0 / data["vi"].to_numpy()
    est = float(np.sum(w * data["yi"].to_numpy()) / w.sum())
    se = float(np.sqrt(1.0 / w.sum()))
    from scipy.stats import norm

    return {
        "estimate": est,
        "se": se,
        "p": float(2 * norm.sf(abs(est / se))),
        "ci_lb": est - 1.96 * se,
        "ci_ub": est + 1.96 * se,
        "k": len(data),
    }


def table(**kw) -> pd.DataFrame:
    args = {"reps": 13, "seed": 7, "executor": "serial", "chunk_size": 4, "progress": False}
    args.update(kw)
    return sim.run(DESIGN, sim.generate_three_level, mean_analysis_k, **args)


def mean_analysis_k(data: pd.DataFrame, condition: dict) -> dict:
    out = mean_analysis(data, condition)
    out["n_es"] = out.pop("k")  # "k" is a design parameter
    return out


@pytest.fixture(scope="module")
def serial() -> pd.DataFrame:
    return table()


# ------------------------------------------------------------------ seeds and executors
def test_seed_tree_is_spawned_per_condition_and_replication():
    kids = np.random.SeedSequence(11).spawn(3)[2].spawn(5)
    for r in range(5):
        a = sim.replication_rng(11, 2, r).random(4)
        b = np.random.default_rng(kids[r]).random(4)
        assert np.array_equal(a, b)


def test_table_layout_and_order(serial):
    assert list(serial.columns[:2]) == ["condition", "rep"]
    assert len(serial) == 2 * 13
    assert serial["condition"].tolist() == [0] * 13 + [1] * 13
    assert serial["rep"].tolist() == list(range(13)) * 2
    # scalar design parameters are joined, list-valued ones are not
    assert serial.loc[serial.condition == 1, "J"].unique().tolist() == [8]
    assert "sigma2" not in serial.columns and "k" not in serial.columns
    assert "beta_study" in serial.columns
    assert serial["n_es"].iloc[0] == 18  # 6 studies x 3


def test_identical_whatever_the_chunk_size_and_executor(serial):
    pd.testing.assert_frame_equal(serial, table(chunk_size=1))
    pd.testing.assert_frame_equal(serial, table(chunk_size=100))
    with cf.ProcessPoolExecutor(2) as ex:
        pd.testing.assert_frame_equal(serial, table(executor=ex, chunk_size=3))
    with cf.ThreadPoolExecutor(3) as ex:
        pd.testing.assert_frame_equal(serial, table(executor=ex, chunk_size=2))


def test_default_process_pool_and_worker_count(serial):
    pd.testing.assert_frame_equal(serial, table(executor=None, chunk_size=5))
    pd.testing.assert_frame_equal(serial, table(executor=1, chunk_size=13))


def test_same_seed_same_numbers_other_seed_other_numbers(serial):
    other = table(seed=8)
    assert not np.allclose(other["estimate"], serial["estimate"])


@pytest.fixture(scope="module")
def dask_clients():
    distributed = pytest.importorskip("distributed")
    clients = []
    for n in (1, 2):
        cluster = distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=False, dashboard_address=":0"
        )
        clients.append((cluster, distributed.Client(cluster)))
    yield [c for _, c in clients]
    for cluster, client in clients:
        client.close()
        cluster.close()


def test_dask_clients_give_the_same_table(serial, dask_clients):
    for client in dask_clients:
        pd.testing.assert_frame_equal(serial, table(executor=client, chunk_size=3))
        pd.testing.assert_frame_equal(serial, table(executor=client.get_executor(), chunk_size=5))


# ------------------------------------------------------------------ checkpoints
_CALLS = {"left": None}


def failing_analysis(data, condition):
    if _CALLS["left"] is not None:
        if _CALLS["left"] <= 0:
            raise RuntimeError("simulated crash")
        _CALLS["left"] -= 1
    return mean_analysis_k(data, condition)


def test_resume_after_a_crash_gives_the_same_table(tmp_path):
    args = {"reps": 13, "seed": 7, "executor": "serial", "chunk_size": 4, "progress": False}
    full = sim.run(DESIGN, sim.generate_three_level, failing_analysis, **args)
    _CALLS["left"] = 9  # chunks of 4: two complete, the third crashes
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            sim.run(
                DESIGN,
                sim.generate_three_level,
                failing_analysis,
                checkpoint=tmp_path / "ck",
                **args,
            )
    finally:
        _CALLS["left"] = None
    files = sorted(p.name for p in (tmp_path / "ck").glob("chunk-*.parquet"))
    assert files == [
        "chunk-c000000-r000000000-000000004.parquet",
        "chunk-c000000-r000000004-000000008.parquet",
    ]
    again = sim.run(
        DESIGN, sim.generate_three_level, failing_analysis, checkpoint=tmp_path / "ck", **args
    )
    pd.testing.assert_frame_equal(full, again)
    assert len(list((tmp_path / "ck").glob("chunk-*.parquet"))) == 8
    # a third run computes nothing: every chunk is read back
    _CALLS["left"] = 0
    try:
        pd.testing.assert_frame_equal(
            full,
            sim.run(
                DESIGN,
                sim.generate_three_level,
                failing_analysis,
                checkpoint=tmp_path / "ck",
                **args,
            ),
        )
    finally:
        _CALLS["left"] = None


KILL_SCRIPT = """
from mlmeta import sim
design = [{{"J": 6, "mu": 0.2, "tau": 0.1, "omega": 0.05, "rho": 0.5, "k": 3, "sigma2": 0.04}},
          {{"J": 5, "mu": 0.0, "tau": 0.2, "k": 2, "sigma2": 0.02}}]
sim.run(design, sim.generate_three_level, sim.analyse_mlma, reps=40, seed=3,
        executor="serial", chunk_size=2, checkpoint={folder!r}, progress=False)
"""


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    """A run killed with SIGKILL mid-way resumes from its checkpoint to the same table."""
    folder = tmp_path / "ck"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT.format(folder=str(folder))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(folder.glob("chunk-*.parquet"))) >= 3:
            break
        time.sleep(0.005)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(folder.glob("chunk-*.parquet")))
    assert 3 <= done < 40
    design = [
        {"J": 6, "mu": 0.2, "tau": 0.1, "omega": 0.05, "rho": 0.5, "k": 3, "sigma2": 0.04},
        {"J": 5, "mu": 0.0, "tau": 0.2, "k": 2, "sigma2": 0.02},
    ]
    args = {"reps": 40, "seed": 3, "executor": "serial", "chunk_size": 2, "progress": False}
    resumed = sim.run(design, sim.generate_three_level, sim.analyse_mlma, checkpoint=folder, **args)
    fresh = sim.run(design, sim.generate_three_level, sim.analyse_mlma, **args)
    pd.testing.assert_frame_equal(fresh, resumed)
    assert not list(folder.glob(".tmp-*"))
    assert len(list(folder.glob("chunk-*.parquet"))) == 40


def test_checkpoint_of_another_simulation_is_refused(tmp_path):
    table(checkpoint=tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["reps"] == 13 and manifest["seed"] == 7 and len(manifest["hash"]) == 64
    for change in ({"seed": 8}, {"reps": 14}, {"chunk_size": 5}):
        with pytest.raises(
            InputError,
            match=r"^checkpoint folder .* holds a different "
            r"simulation \(design, reps, seed, chunk_size or "
            r"functions differ\); use a new folder or delete "
            r"it$",
        ):
            table(checkpoint=tmp_path, **change)
    with pytest.raises(InputError, match="holds a different simulation"):
        sim.run(
            DESIGN[:1],
            sim.generate_three_level,
            mean_analysis_k,
            reps=13,
            seed=7,
            executor="serial",
            chunk_size=4,
            progress=False,
            checkpoint=tmp_path,
        )


def test_chunk_files_without_manifest_are_refused(tmp_path):
    (tmp_path / "chunk-c000000-r000000000-000000004.parquet").write_bytes(b"")
    with pytest.raises(
        InputError,
        match=r"has chunk files but no manifest.json; use a new "
        r"folder or delete it$",
    ):
        table(checkpoint=tmp_path)


# ------------------------------------------------------------------ errors and progress
def test_unpicklable_functions_are_refused_on_an_executor():
    msg = (
        r"^analyse must be picklable to run on an executor: define it at module level \(not a "
        r"lambda or nested function\), or pass executor='serial'; got '.*<lambda>' "
        r"\((PicklingError|AttributeError)\)$"
    )
    with pytest.raises(InputError, match=msg), cf.ThreadPoolExecutor(1) as ex:
        sim.run(
            DESIGN,
            sim.generate_three_level,
            lambda d, c: {"x": 1.0},
            reps=2,
            seed=1,
            executor=ex,
            progress=False,
        )
    # serial needs no pickling
    out = sim.run(
        DESIGN,
        sim.generate_three_level,
        lambda d, c: {"x": 1.0},
        reps=2,
        seed=1,
        executor="serial",
        progress=False,
    )
    assert out["x"].tolist() == [1.0] * 4


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"reps": 0}, r"^reps must be an integer >= 1; got 0$"),
        ({"chunk_size": 2.5}, r"^chunk_size must be an integer >= 1; got 2.5$"),
        ({"seed": -1}, r"^seed must be a non-negative integer; got -1$"),
        (
            {"executor": "threads"},
            (
                r"^executor must be 'serial', a concurrent.futures.Executor, a "
                r"dask.distributed Client or None; got 'threads'$"
            ),
        ),
        ({"executor": 0}, r"^executor: a number of worker processes must be >= 1; got 0$"),
        (
            {"executor": object()},
            (
                r"^executor must be 'serial', a concurrent.futures.Executor, a "
                r"dask.distributed Client or None; got object$"
            ),
        ),
    ],
)
def test_run_argument_errors(kw, msg):
    args = {"reps": 2, "seed": 1, "executor": "serial", "progress": False}
    args.update(kw)
    with pytest.raises(InputError, match=msg):
        sim.run(DESIGN, sim.generate_three_level, mean_analysis_k, **args)


def test_design_errors():
    with pytest.raises(InputError, match=r"^design has no conditions$"):
        sim.run([], sim.generate_three_level, mean_analysis, reps=1, seed=1)
    with pytest.raises(InputError, match=r"got a single dict: wrap it in a list$"):
        sim.run(DESIGN[0], sim.generate_three_level, mean_analysis, reps=1, seed=1)
    with pytest.raises(
        InputError,
        match=r"^design: condition 1 must be a dict of parameters; "
        r"got int$",
    ):
        sim.run([DESIGN[0], 3], sim.generate_three_level, mean_analysis, reps=1, seed=1)
    with pytest.raises(
        InputError,
        match=r"^design must be a DataFrame or a list of dicts \(one "
        r"per condition\); got int$",
    ):
        sim.run(5, sim.generate_three_level, mean_analysis, reps=1, seed=1)
    with pytest.raises(InputError, match=r"^generate must be a function; got str$"):
        sim.run(DESIGN, "gen", mean_analysis, reps=1, seed=1)
    with pytest.raises(
        InputError,
        match=r"^analyse returned column\(s\) 'k' with the name of a "
        r"design parameter; rename them$",
    ):
        sim.run(
            [{"J": 3, "k": 2, "sigma2": 0.1}],
            sim.generate_three_level,
            mean_analysis,
            reps=1,
            seed=1,
            executor="serial",
            progress=False,
        )
    with pytest.raises(
        InputError,
        match=r"^analyse must return a dict or a DataFrame of "
        r"estimates; got float \(condition 0, replication 0\)$",
    ):
        sim.run(
            DESIGN,
            sim.generate_three_level,
            lambda d, c: 1.0,
            reps=1,
            seed=1,
            executor="serial",
            progress=False,
        )


def test_design_as_dataframe_equals_list_of_dicts():
    design = pd.DataFrame(
        [{"J": 5, "mu": 0.1, "k": 2, "sigma2": 0.05}, {"J": 7, "mu": 0.3, "k": 3, "sigma2": 0.02}]
    )
    a = sim.run(
        design,
        sim.generate_three_level,
        mean_analysis_k,
        reps=3,
        seed=2,
        executor="serial",
        progress=False,
    )
    b = sim.run(
        design.to_dict(orient="records"),
        sim.generate_three_level,
        mean_analysis_k,
        reps=3,
        seed=2,
        executor="serial",
        progress=False,
    )
    pd.testing.assert_frame_equal(a, b)


def test_progress_bar_on_stderr(capsys):
    table(progress=True)
    err = capsys.readouterr().err
    assert "\r[" in err and "8/8 chunks 100%" in err and err.endswith("\n")
    table(progress=False)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ generator
def test_generator_shape_and_columns():
    d = sim.generate_three_level(
        {"J": 4, "mu": 0.1, "k": 3, "sigma2": 0.05, "beta_es": 0.2}, np.random.default_rng(1)
    )
    assert d.columns.tolist() == ["study", "es", "yi", "vi", "x_es"]
    assert d["study"].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert d["es"].tolist() == [1, 2, 3] * 4
    assert np.all(d["vi"] == 0.05)


def test_generator_moments_match_the_model():
    """Pooled over many studies: mean mu, Var(y) = tau2 + omega2 + sigma2, and within-study
    covariance tau2 + rho sigma2."""
    cond = {"J": 40000, "mu": 0.3, "tau": 0.3, "omega": 0.2, "rho": 0.6, "k": 2, "sigma2": 0.05}
    d = sim.generate_three_level(cond, np.random.default_rng(5))
    y = d["yi"].to_numpy().reshape(-1, 2)
    assert abs(y.mean() - 0.3) < 0.006
    assert y.var() == pytest.approx(0.09 + 0.04 + 0.05, rel=0.02)
    cov = np.cov(y[:, 0], y[:, 1])[0, 1]
    assert cov == pytest.approx(0.09 + 0.6 * 0.05, rel=0.03)


def test_generator_moderators_enter_with_their_coefficients():
    cond = {"J": 20000, "mu": 0.0, "k": 2, "sigma2": 0.01, "beta_study": 0.5, "beta_es": -0.3}
    d = sim.generate_three_level(cond, np.random.default_rng(2))
    X = np.column_stack([np.ones(len(d)), d["x_study"], d["x_es"]])
    b = np.linalg.lstsq(X, d["yi"].to_numpy(), rcond=None)[0]
    assert b == pytest.approx([0.0, 0.5, -0.3], abs=0.01)
    assert d.groupby("study")["x_study"].nunique().max() == 1


def test_generator_effects_per_study_distributions():
    rng = np.random.default_rng(3)
    d = sim.generate_three_level({"J": 5000, "k": 4, "k_dist": "poisson", "sigma2": 0.1}, rng)
    k = d.groupby("study").size()
    assert k.min() >= 1 and k.mean() == pytest.approx(4.0, abs=0.08)
    d = sim.generate_three_level({"J": 3000, "k": [1, 5], "sigma2": 0.1}, rng)
    assert set(d.groupby("study").size()) == {1, 5}
    # lists of the same length are drawn as (k, sigma2) pairs
    d = sim.generate_three_level({"J": 500, "k": [1, 3], "sigma2": [0.5, 0.02]}, rng)
    pairs = set(zip(d.groupby("study").size(), d.groupby("study")["vi"].first()))
    assert pairs == {(1, 0.5), (3, 0.02)}


def test_generator_variances_from_sample_sizes():
    rng = np.random.default_rng(4)
    d = sim.generate_three_level({"J": 3, "k": 1, "n": 103, "measure": "ZCOR"}, rng)
    assert np.allclose(d["vi"], 1 / 100)
    d = sim.generate_three_level({"J": 3, "k": 1, "n": 80}, rng)
    assert np.allclose(d["vi"], 4 / 80)
    d = sim.generate_three_level({"J": 400, "k": 1, "n": [20, 50]}, rng)
    assert set(np.round(d["vi"], 12)) == {0.2, 0.08}


@pytest.mark.parametrize(
    ("cond", "msg"),
    [
        ({"k": 2, "sigma2": 0.1}, r"^condition: 'J' is required$"),
        ({"J": 1, "k": 2, "sigma2": 0.1}, r"^condition: 'J' must lie in >= 2; got 1$"),
        (
            {"J": 2.5, "k": 2, "sigma2": 0.1},
            (
                r"^condition: 'J' must be a whole number of studies; "
                r"got 2.5$"
            ),
        ),
        (
            {"J": 3, "k": 2, "sigma2": 0.1, "rho": 1},
            (
                r"^condition: 'rho' must lie in \[0, 1\); "
                r"got 1$"
            ),
        ),
        (
            {"J": 3, "k": 2, "sigma2": 0.1, "tau": "a"},
            (
                r"^condition: 'tau' must be a number; "
                r"got 'a'$"
            ),
        ),
        (
            {"J": 3, "sigma2": 0.1},
            (
                r"^condition: 'k' \(effect sizes per study: a number or a list\) "
                r"is required$"
            ),
        ),
        (
            {"J": 3, "k": 0, "sigma2": 0.1},
            (
                r"^condition: 'k' must be a number or a list of numbers "
                r">= 1; got 0$"
            ),
        ),
        (
            {"J": 3, "k": 2.5, "sigma2": 0.1},
            (
                r"^condition: 'k' must be whole numbers for "
                r"k_dist='constant'; got 2.5$"
            ),
        ),
        (
            {"J": 3, "k": 2, "k_dist": "geometric", "sigma2": 0.1},
            r"^condition: 'k_dist' must be one of constant, poisson, empirical; got 'geometric'$",
        ),
        (
            {"J": 3, "k": [1, 2], "k_dist": "poisson", "sigma2": 0.1},
            r"^condition: k_dist='poisson' takes one number 'k'; got a list of 2$",
        ),
        (
            {"J": 3, "k": 2},
            (
                r"^condition: give exactly one of 'sigma2' \(sampling variances\) or 'n' "
                r"\(sample sizes\)$"
            ),
        ),
        (
            {"J": 3, "k": 2, "sigma2": [0.1, -1]},
            (
                r"^condition: 'sigma2' must be a number or a list "
                r"of numbers > 0; got \[0.1, -1\]$"
            ),
        ),
        (
            {"J": 3, "k": 2, "n": 3, "measure": "ZCOR"},
            (
                r"^condition: 'n' must be a number or a list "
                r"of numbers > 3; got 3$"
            ),
        ),
        (
            {"J": 3, "k": 2, "n": 30, "measure": "OR"},
            (
                r"^condition: 'measure' must be one of ZCOR, "
                r"SMD; got 'OR'$"
            ),
        ),
    ],
)
def test_generator_errors(cond, msg):
    with pytest.raises(InputError, match=msg):
        sim.generate_three_level(cond, np.random.default_rng(0))
    with pytest.raises(InputError, match=r"^condition must be a dict of parameters; got list$"):
        sim.generate_three_level([1], np.random.default_rng(0))


# ------------------------------------------------------------------ analyses
@pytest.fixture(scope="module")
def unbalanced():
    cond = {
        "J": 12,
        "mu": 0.2,
        "tau": 0.15,
        "omega": 0.1,
        "rho": 0.6,
        "k": [1, 2, 3, 6],
        "sigma2": [0.01, 0.04, 0.09],
        "beta_study": 0.1,
    }
    return cond, sim.generate_three_level(cond, np.random.default_rng(9))


def test_che_rve_is_mlmeta_che_with_cr2(unbalanced):
    cond, d = unbalanced
    out = sim.analyse_che_rve(d, cond)
    res = mlmeta.rma_mv(
        d, "yi", "vi", random="study/es", mods="~ x_study", rho=0.6, test="t", dfs="contain"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mlmeta.FitWarning)
        rob = res.robust(type="CR2").coefs
    assert out.columns.tolist() == list(sim.analyse.COLUMNS)
    assert out["term"].tolist() == ["intrcpt", "x_study"]
    assert out["estimate"].tolist() == pytest.approx(rob["estimate"].tolist(), rel=1e-12)
    assert out["se"].tolist() == pytest.approx(rob["se"].tolist(), rel=1e-12)
    assert out["df"].tolist() == pytest.approx(rob["df"].tolist(), rel=1e-12)
    assert out["p"].tolist() == pytest.approx(rob["pval"].tolist(), rel=1e-12)
    assert out["tau2"].iloc[0] == pytest.approx(res.sigma2.iloc[0], rel=1e-12)
    assert out["true_value"].tolist() == [0.2, 0.1]
    assert (out["error"] == "").all()


def test_working_rho_overrides_rho(unbalanced):
    cond, d = unbalanced
    a = sim.analyse_che_rve(d, {**cond, "working_rho": 0.2})
    res = mlmeta.rma_mv(
        d, "yi", "vi", random="study/es", mods="~ x_study", rho=0.2, test="t", dfs="contain"
    )
    assert a["estimate"].tolist() == pytest.approx(res.beta.tolist(), rel=1e-12)


def test_mlma_is_model_based_with_containment_df(unbalanced):
    cond, d = unbalanced
    out = sim.analyse_mlma(d, cond)
    res = mlmeta.rma_mv(d, "yi", "vi", random="study/es", mods="~ x_study", test="t", dfs="contain")
    assert out["se"].tolist() == pytest.approx(res.se.tolist(), rel=1e-12)
    assert out["df"].tolist() == [10.0, 10.0]
    assert out["omega2"].iloc[0] == pytest.approx(res.sigma2.iloc[1], rel=1e-12)


def test_ce_aggregates_under_the_working_rho(unbalanced):
    cond, d = unbalanced
    agg = sim.aggregate_studies(d, 0.6)
    g = d[d.study == d.study.iloc[-1]]
    v = g["vi"].to_numpy()
    V = 0.6 * np.sqrt(np.outer(v, v))
    np.fill_diagonal(V, v)
    w = np.linalg.solve(V, np.ones(len(v)))
    assert agg["yi"].iloc[-1] == pytest.approx(w @ g["yi"].to_numpy() / w.sum(), rel=1e-12)
    assert agg["vi"].iloc[-1] == pytest.approx(1 / w.sum(), rel=1e-12)
    # equal variances: the mean, with variance sigma2 (1 + (k - 1) rho) / k
    if len(set(v)) == 1:
        assert agg["vi"].iloc[-1] == pytest.approx(v[0] * (1 + (len(v) - 1) * 0.6) / len(v))
    out = sim.analyse_ce_rve(d, cond)
    res = mlmeta.rma_mv(agg, "yi", "vi", random="study", mods="~ x_study", test="t", dfs="contain")
    rob = res.robust(type="CR2").coefs
    assert out["estimate"].tolist() == pytest.approx(rob["estimate"].tolist(), rel=1e-12)
    assert out["se"].tolist() == pytest.approx(rob["se"].tolist(), rel=1e-12)
    assert np.isnan(out["omega2"]).all()


def test_equal_variance_aggregation_formula():
    d = pd.DataFrame(
        {"study": [1, 1, 1, 2], "yi": [0.1, 0.2, 0.6, 0.4], "vi": [0.04, 0.04, 0.04, 0.09]}
    )
    agg = sim.aggregate_studies(d, 0.5)
    assert agg["yi"].tolist() == pytest.approx([0.3, 0.4])
    assert agg["vi"].tolist() == pytest.approx([0.04 * 2 / 3, 0.09])


def test_balanced_design_all_three_estimates_agree():
    cond = {"J": 10, "mu": 0.2, "tau": 0.2, "omega": 0.1, "rho": 0.5, "k": 3, "sigma2": 0.04}
    d = sim.generate_three_level(cond, np.random.default_rng(12))
    out = sim.analyse_all(d, cond)
    assert out["method"].tolist() == ["CHE-RVE", "MLMA", "CE-RVE"]
    assert np.ptp(out["estimate"]) < 1e-7


def test_failed_fit_gives_nan_row_with_the_message():
    d = pd.DataFrame({"study": [1, 2], "es": [1, 1], "yi": [0.1, 0.2], "vi": [0.1, -0.1]})
    out = sim.analyse_che_rve(d, {"mu": 0.1, "rho": 0.5})
    assert np.isnan(out["estimate"]).all() and "sampling variance" in out["error"].iloc[0]


# ------------------------------------------------------------------ summarise
def test_summarise_matches_simhelpers():
    cases = json.loads(SIMHELPERS.read_text())["cases"]
    for c in cases:

        def nan(xs):
            return np.array([np.nan if x is None else x for x in xs], float)

        got = sim.performance(
            nan(c["estimates"]),
            c["true_param"],
            p_values=nan(c["p_values"]),
            ci_lb=nan(c["lower_bound"]),
            ci_ub=nan(c["upper_bound"]),
            alpha=c["alpha"],
        )
        a = c["calc_absolute"]
        assert got["K"] == a["K_absolute"]
        for key, ref in [
            ("bias", "bias"),
            ("bias_mcse", "bias_mcse"),
            ("var", "var"),
            ("var_mcse", "var_mcse"),
            ("stddev", "stddev"),
            ("stddev_mcse", "stddev_mcse"),
            ("mse", "mse"),
            ("mse_mcse", "mse_mcse"),
            ("rmse", "rmse"),
            ("rmse_mcse", "rmse_mcse"),
        ]:
            assert got[key] == pytest.approx(a[ref], rel=1e-10), (c["case"], key)
        r = c["calc_relative"]
        for key in (
            "rel_bias",
            "rel_bias_mcse",
            "rel_mse",
            "rel_mse_mcse",
            "rel_rmse",
            "rel_rmse_mcse",
        ):
            if r[key] is None:
                assert np.isnan(got[key]), (c["case"], key)
            else:  # simhelpers divides by theta, mlmeta by |theta| for the SEs and RMSE
                want = r[key] if key in ("rel_bias", "rel_mse", "rel_mse_mcse") else abs(r[key])
                assert got[key] == pytest.approx(want, rel=1e-10), (c["case"], key)
        j = c["calc_rejection"]
        assert got["K_rejection"] == j["K_rejection"]
        assert got["rej_rate"] == pytest.approx(j["rej_rate"], rel=1e-12)
        assert got["rej_rate_mcse"] == pytest.approx(j["rej_rate_mcse"], rel=1e-10)
        v = c["calc_coverage"]
        assert got["K_coverage"] == v["K_coverage"]
        for key in ("coverage", "coverage_mcse", "width", "width_mcse"):
            assert got[key] == pytest.approx(v[key], rel=1e-10), (c["case"], key)


def test_summarise_by_hand():
    t = np.array([0.1, 0.3, 0.2, 0.6, 0.4])
    theta = 0.25
    K, tbar, s = 5, 0.32, np.std(t, ddof=1)
    got = sim.performance(
        t, theta, p_values=[0.01, 0.2, 0.049, 0.05, 0.001], ci_lb=t - 0.2, ci_ub=t + 0.2
    )
    assert got["bias"] == pytest.approx(tbar - theta)
    assert got["bias_mcse"] == pytest.approx(s / np.sqrt(K))
    kurt = np.sum((t - tbar) ** 4) / (K * s**4)
    assert got["var"] == pytest.approx(s**2)
    assert got["var_mcse"] == pytest.approx(s**2 * np.sqrt((kurt - 1) / K))
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean((t - theta) ** 2)))
    # jackknife RMSE: leave one out, recompute RMSE exactly
    loo = [
        np.sqrt((np.delete(t, i).mean() - theta) ** 2 + np.var(np.delete(t, i), ddof=1))
        for i in range(K)
    ]
    assert got["rmse_mcse"] == pytest.approx(
        np.sqrt((K - 1) / K * np.sum((np.array(loo) - got["rmse"]) ** 2))
    )
    assert got["rej_rate"] == pytest.approx(3 / 5)  # p < 0.05 strictly: 0.05 does not reject
    assert got["rej_rate_mcse"] == pytest.approx(np.sqrt(0.6 * 0.4 / 5))
    assert got["coverage"] == pytest.approx(4 / 5)  # 0.6 - 0.2 = 0.4 > 0.25
    assert got["width"] == pytest.approx(0.4) and got["width_mcse"] == pytest.approx(0, abs=1e-15)


def test_summarise_table_groups_and_design_columns(serial):
    out = sim.summarise(serial, true_value="mu")
    assert out["condition"].tolist() == [0, 1]
    assert out["J"].tolist() == [6, 8] and out["true_value"].tolist() == [0.2, 0.0]
    assert "estimate" not in out.columns and "n_es" not in out.columns  # n_es varies in 1
    g = serial[serial.condition == 1]
    want = sim.performance(g["estimate"], 0.0, p_values=g["p"], ci_lb=g["ci_lb"], ci_ub=g["ci_ub"])
    for key, val in want.items():
        assert out.iloc[1][key] == pytest.approx(val, nan_ok=True), key
    # a number and a callable give the same as the column
    a = sim.summarise(serial[serial.condition == 0], true_value=0.2)
    b = sim.summarise(serial[serial.condition == 0], true_value=lambda g: 0.2)
    pd.testing.assert_frame_equal(a, b)
    assert a["bias"].iloc[0] == pytest.approx(out["bias"].iloc[0])


def test_summarise_errors(serial):
    with pytest.raises(InputError, match=r"^estimate column 'est' not found in results$"):
        sim.summarise(serial, 0.0, estimate="est")
    with pytest.raises(InputError, match=r"^by: column 'cell' not found in results$"):
        sim.summarise(serial, 0.0, by="cell")
    with pytest.raises(InputError, match=r"^true_value column 'theta' not found in results$"):
        sim.summarise(serial, "theta")
    with pytest.raises(
        InputError,
        match=r"^true_value column 'mu' must have one value per "
        r"group; group \(\) has 2$",
    ):
        sim.summarise(serial, "mu", by=[])
    with pytest.raises(InputError, match=r"^alpha must lie strictly between 0 and 1; got 5$"):
        sim.summarise(serial, 0.0, alpha=5)
    with pytest.raises(InputError, match=r"^results must be a DataFrame; got list$"):
        sim.summarise([1, 2], 0.0)


@pytest.mark.filterwarnings("error")
@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=3, max_size=30),
    st.floats(-2, 2),
    st.floats(0.1, 10),
)
def test_summarise_scale_and_shift_invariance(t, theta, c):
    """bias and RMSE scale with the estimates; coverage and rejection do not depend on them."""
    t = np.array(t)
    a = sim.performance(t, theta)
    b = sim.performance(c * t + 1.0, c * theta + 1.0)
    assert b["bias"] == pytest.approx(c * a["bias"], abs=1e-9)
    assert b["rmse"] == pytest.approx(c * a["rmse"], abs=1e-9)
    assert b["var"] == pytest.approx(c**2 * a["var"], abs=1e-9)
    assert b["bias_mcse"] == pytest.approx(c * a["bias_mcse"], abs=1e-9)


@pytest.mark.filterwarnings("error")
def test_constant_and_tiny_series_summarise_without_warnings():
    """A constant series has s = 0 (not the ~1e-17 of a mean that is not exactly 0.1), so its
    variance and MSE have MCSE 0; a series of spread 1e-120 (whose cubes underflow) or 1e100
    (whose fourth powers overflow) gives the same standardised moments as its rescaled copy."""
    for t in ([0.1, 0.1, 0.1], [2.0] * 5, [0.0, 0.0, 5e-324]):
        a = sim.performance(np.array(t), 0.0)
        assert a["var"] == 0 and a["stddev"] == 0 and a["bias_mcse"] == 0
        assert a["var_mcse"] == 0 and a["mse_mcse"] == 0
        assert a["bias"] == t[0] and a["mse"] == pytest.approx(t[0] ** 2, rel=1e-15)
    t = np.array([1.0, 0.0, 0.0, 3.0, -2.0])
    ref = sim.performance(t, 0.0)
    for c in (1e-120, 1e100):
        a = sim.performance(c * t, 0.0)
        assert a["var_mcse"] == pytest.approx(c**2 * ref["var_mcse"], rel=1e-12)
        assert a["mse_mcse"] == pytest.approx(c**2 * ref["mse_mcse"], rel=1e-12)
    # mean 0.4, sum d^2 = 13.2 (s^2 = 3.3), sum d^4 = 79.056
    assert ref["var_mcse"] == pytest.approx(
        3.3 * np.sqrt((79.056 / (5 * 3.3**2) - 1) / 5), rel=1e-12
    )


# ------------------------------------------------------------------ agreement with POMADE
@pytest.mark.slow
def test_simulated_power_agrees_with_pomade():
    """Simulated power of CHE + RVE and of MLMA (model-based) agrees with POMADE's analytic
    power (mlmeta.power) within 3.5 Monte Carlo SEs, 400 replications each (balanced designs
    of the POMADE reference cases bal_power_che_rve_J20 and bal_power_mlma_model_J10)."""
    pw = pytest.importorskip("mlmeta.power")
    design = [
        {
            "model": "CHE",
            "J": 20,
            "mu": 0.2,
            "tau": 0.2,
            "omega": 0.1,
            "rho": 0.5,
            "k": 4,
            "sigma2": 0.04,
        },
        {
            "model": "MLMA",
            "J": 10,
            "mu": 0.3,
            "tau": 0.1,
            "omega": 0.05,
            "rho": 0.8,
            "k": 2,
            "sigma2": 0.1,
        },
    ]
    res = sim.run(
        design,
        sim.generate_three_level,
        che_or_mlma,
        reps=400,
        seed=2024,
        executor="serial",
        progress=False,
    )
    perf = sim.summarise(res, true_value="true_value")
    for cond, var_df, reference in [(0, "RVE", 0.903906695679524), (1, "model", 0.756057888677127)]:
        d = design[cond]
        analytic = pw.power(
            J=d["J"],
            mu=d["mu"],
            tau=d["tau"],
            omega=d["omega"],
            rho=d["rho"],
            sigma2=d["sigma2"],
            k=d["k"],
            model=d["model"],
            var_df=var_df,
        ).power
        assert analytic == pytest.approx(reference, rel=1e-4)  # POMADE's number
        row = perf[perf.condition == cond].iloc[0]
        assert row["K_rejection"] == 400
        assert abs(row["rej_rate"] - analytic) < 3.5 * row["rej_rate_mcse"], (
            d["model"],
            row["rej_rate"],
            analytic,
            row["rej_rate_mcse"],
        )


def che_or_mlma(data, condition):
    if condition["model"] == "CHE":
        return sim.analyse_che_rve(data, condition)
    return sim.analyse_mlma(data, condition)


def test_checkpoint_without_pyarrow_says_which_extra(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a)
    )
    with pytest.raises(
        InputError,
        match=r"^checkpoint= writes Parquet files and needs "
        r"pyarrow: pip install 'mlmeta\[sim\]'$",
    ):
        table(checkpoint=tmp_path)

"""Plots (mlmeta.plots): render without warnings, draw the right numbers, save PNG/PDF, and
scale to thousands of effect sizes (study-level forest, pages of at most 12 inches)."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from conftest import REF  # noqa: E402

import mlmeta  # noqa: E402
from mlmeta import plots  # noqa: E402
from mlmeta.errors import InputError  # noqa: E402

DATA = REF / "data"


@pytest.fixture(scope="module")
def alliance():
    return pd.read_csv(DATA / "alliance_like.csv")


@pytest.fixture(scope="module")
def res(alliance):
    return mlmeta.rma_mv(
        alliance, "yi", "vi", random="study/es", test="t", dfs="contain", measure="ZCOR"
    )


@pytest.fixture(scope="module")
def res_phase(alliance):
    return mlmeta.rma_mv(
        alliance,
        "yi",
        "vi",
        random="study/es",
        mods="~ phase",
        test="t",
        dfs="contain",
        measure="ZCOR",
    )


@pytest.fixture(scope="module")
def konst():
    d = pd.read_csv(DATA / "konstantopoulos2011.csv")
    return mlmeta.rma_mv(d, "yi", "vi", random="district/school")


@pytest.fixture(scope="module")
def molloy():
    return pd.read_csv(DATA / "molloy2014.csv")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def draw(fn, *args, **kw):
    """Call a plot function and render its figure with every warning turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = fn(*args, **kw)
        first = np.ravel(out)[0] if isinstance(out, np.ndarray) else out
        first.figure.canvas.draw()
    return out


def by_gid(ax, gid, kind=None):
    arts = [a for a in ax.get_children() if a.get_gid() == gid]
    if kind is not None:
        arts = [a for a in arts if isinstance(a, kind)]
    return arts


def texts(ax, gid):
    return [t.get_text() for t in ax.texts if t.get_gid() == gid]


def num(s: str) -> float:
    return float(s.replace("\u2212", "-").strip("[],"))


def check_saved(ax, tmp_path, name):
    paths = plots.save_figure(ax, tmp_path / name, formats=("png",), dpi=50)
    assert [p.suffix for p in paths] == [".png"]
    assert all(p.stat().st_size > 1000 for p in paths)


# --------------------------------------------------------------------------- import
def test_import_mlmeta_does_not_import_matplotlib():
    code = "import sys, mlmeta, mlmeta.plots, mlmeta.results; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- forest
def test_forest_three_level(res, tmp_path):
    ax = draw(plots.forest, res)
    assert isinstance(ax, matplotlib.axes.Axes)
    k = res.k
    (pts,) = by_gid(ax, "forest-effects")
    off = pts.get_offsets()
    assert len(off) == k
    # back-transformed to r by default for ZCOR, one marker per effect size
    np.testing.assert_allclose(np.sort(off[:, 0]), np.sort(np.tanh(res.data.y)))
    # CIs yi -+ 1.96 sqrt(vi)
    (ci,) = by_gid(ax, "forest-ci")
    segs = np.array(ci.get_segments())
    lo = np.tanh(res.data.y - 1.959963984540054 * np.sqrt(res.data.v))
    np.testing.assert_allclose(np.sort(segs[:, 0, 0]), np.sort(lo))
    # each effect's marker sits on the row of its CI
    np.testing.assert_allclose(np.sort(segs[:, 0, 1]), np.sort(off[:, 1]))
    # summary diamond spans the CI of predict(transf="ztor"), apex at the estimate
    pr = res.predict(transf="ztor")
    (dia,) = by_gid(ax, "forest-summary")
    xy = dia.get_xy()
    assert xy[:, 0].min() == pytest.approx(pr.ci_lb[0], abs=1e-12)
    assert xy[:, 0].max() == pytest.approx(pr.ci_ub[0], abs=1e-12)
    assert xy[1, 0] == pytest.approx(pr.pred[0], abs=1e-12)
    # prediction interval below the diamond
    (pi,) = by_gid(ax, "forest-pi")
    seg = pi.get_segments()[0]
    np.testing.assert_allclose(sorted(seg[:, 0]), [pr.pi_lb[0], pr.pi_ub[0]], atol=1e-12)
    assert seg[0, 1] > xy[:, 1].max()
    # weights: one per effect size, summing to 100 (up to rounding to 0.1)
    w = [num(s) for s in texts(ax, "forest-weight")]
    assert len(w) == k
    assert sum(w) == pytest.approx(100.0, abs=0.05 * k)
    # ... and they reproduce the pooled estimate
    assert np.sum(res.weights() * res.data.y) / 100 == pytest.approx(res.core.beta[0])
    # one heading per study, effect labels below
    assert len(texts(ax, "forest-study")) == res.n_levels[0]
    assert texts(ax, "forest-study")[0] == "study 1"
    assert "es 1" in texts(ax, "forest-label")
    # estimate column: summary text equals predict
    assert num(texts(ax, "forest-summary-0")[0]) == pytest.approx(pr.pred[0], abs=0.005)
    check_saved(ax, tmp_path, "forest")


def test_forest_rows_grouped_under_study(res):
    ax = draw(plots.forest, res, transf="none")
    (pts,) = by_gid(ax, "forest-effects")
    off = pts.get_offsets()
    np.testing.assert_allclose(np.sort(off[:, 0]), np.sort(res.data.y))
    heads = sorted(t.get_position()[1] for t in ax.texts if t.get_gid() == "forest-study")
    # every effect size lies below the heading of its own study and above the next one
    study = res.data.factors[0]
    order = pd.unique(pd.Series(study))
    # markers are drawn in the data's row order
    np.testing.assert_allclose(off[:, 0], res.data.y)
    y_of = {}
    for i, (_, yv) in enumerate(off):
        y_of.setdefault(study[i], []).append(yv)
    for s, h0, h1 in zip(order, heads, heads[1:] + [np.inf]):
        if len(y_of[s]) == 1:  # a study with one effect size is one row, labelled by the study
            assert y_of[s] == [h0] and h0 < h1
        else:  # a heading row, the effect sizes below it
            assert all(h0 < yv < h1 for yv in y_of[s])


def test_forest_sorted_and_labels(molloy):
    r = mlmeta.rma_mv(molloy, "yi", "vi", random="id", measure="ZCOR")
    ax = draw(plots.forest, r, sort=True, labels="authors")
    (pts,) = by_gid(ax, "forest-effects")
    off = pts.get_offsets()
    x_by_row = off[np.argsort(off[:, 1]), 0]
    assert np.all(np.diff(x_by_row) >= 0)
    # one effect per id: no study headings, labels from the column
    assert texts(ax, "forest-study") == []
    assert set(texts(ax, "forest-label")) == set(molloy["authors"])
    assert len(by_gid(ax, "forest-pi")) == 1
    with pytest.raises(InputError, match="labels has 3 entries"):
        plots.forest(r, labels=["a", "b", "c"])
    with pytest.raises(InputError, match="not found"):
        plots.forest(r, labels="nope")


def test_forest_equal_effects_and_konstantopoulos(molloy, konst, tmp_path):
    r0 = mlmeta.rma_mv(molloy, "yi", "vi")
    ax = draw(plots.forest, r0)
    assert by_gid(ax, "forest-pi") == []  # no prediction interval without heterogeneity
    (dia,) = by_gid(ax, "forest-summary")
    pr = r0.predict()
    assert dia.get_xy()[:, 0].min() == pytest.approx(pr.ci_lb[0])
    assert ax.get_xlabel() == "Effect size"
    ax = draw(plots.forest, konst, study_labels={11: "District 11"})
    heads = texts(ax, "forest-study")
    assert len(heads) == 11 and heads[0] == "District 11" and heads[1] == "district 12"
    (pts,) = by_gid(ax, "forest-effects")
    assert len(pts.get_offsets()) == konst.k
    check_saved(ax, tmp_path, "forest_konst")


def test_forest_moderator_model_draws_fitted_values(res_phase):
    ax = draw(plots.forest, res_phase)
    assert by_gid(ax, "forest-summary") == [] and by_gid(ax, "forest-pi") == []
    (poly,) = by_gid(ax, "forest-fitted")
    paths = poly.get_paths()
    assert len(paths) == res_phase.k
    centres = np.array([p.vertices[1, 0] for p in paths])
    fitted = np.tanh(res_phase.data.X @ res_phase.core.beta)
    np.testing.assert_allclose(np.sort(centres), np.sort(fitted))


# --------------------------------------------------------------------------- funnel
def test_funnel(res, res_phase, tmp_path):
    ax = draw(plots.funnel, res)
    assert isinstance(ax, matplotlib.axes.Axes)
    se = np.sqrt(res.data.v)
    assert ax.yaxis_inverted()
    top, bottom = ax.get_ylim()[1], ax.get_ylim()[0]
    assert top == 0.0 and bottom >= se.max()
    (pts,) = by_gid(ax, "funnel-points")
    np.testing.assert_allclose(pts.get_offsets(), np.column_stack([res.data.y, se]))
    (est,) = by_gid(ax, "funnel-estimate")
    assert est.get_xdata()[0] == pytest.approx(res.core.beta[0])
    assert len(by_gid(ax, "funnel-contour")) == 4
    assert next(t.get_text() for t in ax.get_legend().get_texts()) == "p > .10"
    check_saved(ax, tmp_path, "funnel")
    # moderator model: residuals around 0; plain funnel without contours
    ax = draw(plots.funnel, res_phase, contours=())
    (pts,) = by_gid(ax, "funnel-points")
    resid = res_phase.data.y - res_phase.data.X @ res_phase.core.beta
    np.testing.assert_allclose(pts.get_offsets()[:, 0], resid)
    assert by_gid(ax, "funnel-contour") == []
    assert ax.get_xlabel().startswith("Residual")


# --------------------------------------------------------------------------- orchard
def test_orchard_uses_the_moderator_model(res_phase, tmp_path):
    ax = draw(plots.orchard, res_phase, "phase")
    (est,) = by_gid(ax, "orchard-estimates")
    pr = res_phase.predict(newmods=pd.DataFrame({"phase": ["early", "late"]}), transf="ztor")
    np.testing.assert_allclose(est.get_offsets()[:, 0], pr.pred)
    (ci,) = by_gid(ax, "orchard-ci")
    np.testing.assert_allclose(
        np.array(ci.get_segments())[:, :, 0], np.column_stack([pr.ci_lb, pr.ci_ub])
    )
    (pi,) = by_gid(ax, "orchard-pi")
    np.testing.assert_allclose(
        np.array(pi.get_segments())[:, :, 0], np.column_stack([pr.pi_lb, pr.pi_ub])
    )
    assert [t.get_text() for t in ax.get_yticklabels()] == ["early", "late"]
    fr = res_phase.data.frame
    exp = [
        f"k = {(fr.phase == p).sum()} ({fr.loc[fr.phase == p, 'study'].nunique()})"
        for p in ("early", "late")
    ]
    assert texts(ax, "orchard-k") == exp
    n_pts = sum(
        len(c.get_offsets())
        for c in ax.collections
        if str(c.get_gid()).startswith("orchard-points")
    )
    assert n_pts == res_phase.k
    check_saved(ax, tmp_path, "orchard")


def test_orchard_refits_when_needed(res, alliance):
    ax = draw(plots.orchard, res, "rater", transf="none")
    fit = mlmeta.rma_mv(
        alliance,
        "yi",
        "vi",
        random="study/es",
        mods="~ rater",
        test="t",
        dfs="contain",
        measure="ZCOR",
    )
    levels = ["observer", "patient", "therapist"]
    pr = fit.predict(newmods=pd.DataFrame({"rater": levels}))
    (est,) = by_gid(ax, "orchard-estimates")
    assert len(est.get_offsets()) == 3
    np.testing.assert_allclose(est.get_offsets()[:, 0], pr.pred, rtol=1e-6, atol=1e-9)
    with pytest.raises(InputError, match="not found"):
        plots.orchard(res, "nope")


# --------------------------------------------------------------------------- bubble
def test_bubble(res, alliance, tmp_path):
    ax = draw(plots.bubble, res, "ni")
    fit = mlmeta.rma_mv(
        alliance,
        "yi",
        "vi",
        random="study/es",
        mods="~ ni",
        test="t",
        dfs="contain",
        measure="ZCOR",
    )
    (line,) = by_gid(ax, "bubble-line")
    x, yv = line.get_data()
    pr = fit.predict(newmods=pd.DataFrame({"ni": [x[0], x[-1]]}), transf="ztor")
    np.testing.assert_allclose([yv[0], yv[-1]], pr.pred, rtol=1e-6)
    assert x[0] == alliance.ni.min() and x[-1] == alliance.ni.max()
    (pts,) = by_gid(ax, "bubble-points")
    np.testing.assert_allclose(
        pts.get_offsets(), np.column_stack([alliance.ni, np.tanh(alliance.yi)])
    )
    assert len(by_gid(ax, "bubble-ci")) == 1
    check_saved(ax, tmp_path, "bubble")
    with pytest.raises(InputError, match="not numeric"):
        plots.bubble(res, "phase")


# --------------------------------------------------------------------------- profile
def test_profile_plot(res, tmp_path):
    axs = draw(plots.profile_plot, res, n=12)
    assert isinstance(axs, np.ndarray) and len(axs) == 2
    ci = res.profile_ci().table
    cut = res.core.ll - 3.841458820694124 / 2
    for j, ax in enumerate(axs):
        (curve,) = by_gid(ax, "profile-curve")
        x, ll = curve.get_data()
        assert x[np.argmax(ll)] == pytest.approx(res.core.sigma2[j])
        assert np.max(ll) == pytest.approx(res.core.ll, abs=1e-8)
        (c,) = by_gid(ax, "profile-cutoff")
        assert c.get_ydata()[0] == pytest.approx(cut)
        lims = sorted(a.get_xdata()[0] for a in by_gid(ax, "profile-ci"))
        exp = [b for b in (ci.ci_lb.iloc[j], ci.ci_ub.iloc[j])]
        np.testing.assert_allclose(lims, exp)
        assert x.max() == pytest.approx(3 * max(ci.ci_ub.iloc[j], res.core.sigma2[j]))
    check_saved(axs[0], tmp_path, "profile")
    ax = draw(plots.profile_plot, res, j=1, n=8)
    assert isinstance(ax, matplotlib.axes.Axes)


def test_profile_plot_needs_random_effects(molloy):
    r0 = mlmeta.rma_mv(molloy, "yi", "vi")
    with pytest.raises(InputError):
        plots.profile_plot(r0)


# --------------------------------------------------------------------------- leave-one-out
def test_loo_plot(res, tmp_path):
    ax = draw(plots.loo_plot, res)
    loo = res.loo_cluster()
    (pts,) = by_gid(ax, "loo-points")
    np.testing.assert_allclose(pts.get_offsets()[:, 0], np.tanh(loo["beta"].to_numpy()), rtol=1e-7)
    assert len(pts.get_offsets()) == res.n_levels[0]
    (full,) = by_gid(ax, "loo-full")
    assert full.get_xdata()[0] == pytest.approx(np.tanh(res.core.beta[0]))
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(x) for x in loo["left_out"]]
    check_saved(ax, tmp_path, "loo")


# --------------------------------------------------------------------------- saving
def test_save_figure_png_and_pdf(res, tmp_path):
    ax = draw(plots.funnel, res)
    paths = plots.save_figure(ax.figure, tmp_path / "sub" / "funnel.png", dpi=60)
    assert [p.name for p in paths] == ["funnel.png", "funnel.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert paths[1].read_bytes().startswith(b"%PDF")
    svg = plots.save_figure(ax.figure, tmp_path / "f", formats=("svg",))
    assert svg[0].read_text().lstrip().startswith("<?xml")


def test_draw_into_given_axes(res):
    _fig, (a1, a2) = plt.subplots(1, 2)
    assert draw(plots.funnel, res, ax=a1) is a1
    assert draw(plots.bubble, res, "ni", ax=a2, color="red") is a2
    with pytest.raises(InputError, match="one per component"):
        plots.profile_plot(res, ax=a1)


# --------------------------------------------------------------------------- forests that scale
@pytest.fixture(scope="module")
def big():
    """SIMULATED: 1,501 effect sizes in 300 studies (the size that once gave a 386-inch
    forest and a 76-inch leave-one-out plot)."""
    rng = np.random.default_rng(7)
    sizes = 1 + rng.multinomial(1501 - 300, np.full(300, 1 / 300))
    study = np.repeat(np.arange(1, 301), sizes)
    k = len(study)
    u = rng.normal(0, 0.1, 300)[study - 1]
    vi = rng.uniform(0.005, 0.05, k)
    d = pd.DataFrame(
        {
            "study": study,
            "es": np.arange(1, k + 1),
            "vi": vi,
            "yi": 0.2 + u + rng.normal(0, 0.05, k) + rng.normal(0, np.sqrt(vi)),
        }
    )
    return mlmeta.rma_mv(d, "yi", "vi", random="study/es")


def test_study_level_rows_combine_each_studys_effects(res):
    ax = draw(plots.forest, res, level="study", transf="none")
    (pts,) = by_gid(ax, "forest-effects")
    off = pts.get_offsets()
    assert len(off) == res.n_levels[0]
    # GLS mean of a study's effects with its within-study covariance diag(v) + sigma2_2 I
    fr = res.data.frame.reset_index(drop=True)
    s2 = res.core.sigma2[1]
    first = fr.groupby("study", sort=False).head(1).index
    for row, (_, g) in zip(np.argsort(off[:, 1]), fr.groupby("study", sort=False)):
        w = 1.0 / (res.data.v[g.index] + s2)
        assert off[row, 0] == pytest.approx(np.sum(w * res.data.y[g.index]) / np.sum(w))
    ks = [int(t) for t in texts(ax, "forest-k")]
    assert ks == fr.groupby("study", sort=False).size().tolist() and len(first) == len(ks)
    w = [num(s) for s in texts(ax, "forest-weight")]
    assert sum(w) == pytest.approx(100.0, abs=0.05 * len(w))
    with pytest.raises(InputError, match="level must be one of effect, study; got 'page'"):
        plots.forest(res, level="page")
    with pytest.raises(InputError, match="at level='study' use study_labels"):
        plots.forest(res, level="study", labels="es")


@pytest.mark.slow
def test_forest_scales_to_1501_effect_sizes(big, tmp_path):
    h_eff, n_eff = plots.forest_height(big, "effect")
    h_st, n_st = plots.forest_height(big, "study")
    assert n_eff == 1501 and n_st == 300 and h_eff > 200 and h_st < h_eff
    assert plots.auto_level(big) == "study"
    ax = plots.forest(big, level="study", max_height=12)
    fig = ax.figure
    assert fig.get_size_inches()[1] <= 12
    shown, total = fig.mlmeta_rows
    assert total == 300 and 0 < shown < 300
    assert len(by_gid(ax, "forest-summary")) == 1  # the pooled estimate is on the page
    pages = plots.forest_pages(big, tmp_path / "all.pdf", level="effect", max_height=12)
    data = (tmp_path / "all.pdf").read_bytes()
    boxes = [
        tuple(float(x) for x in m)
        for m in re.findall(rb"/MediaBox \[ *0 0 ([0-9.]+) ([0-9.]+) *\]", data)
    ]
    assert len(boxes) == pages and pages >= 15
    assert max(h for _, h in boxes) <= 12 * 72 + 0.5
    with pytest.raises(InputError, match="max_height must be at least 3 inches"):
        plots.forest_pages(big, tmp_path / "x.pdf", max_height=2)


def test_forest_pages_keep_every_row(res, tmp_path):
    from mlmeta.plots.base import transform
    from mlmeta.plots.forestplot import layout
    from mlmeta.plots.forestplot.rows import effect_rows

    rows = effect_rows(res, transform(res, None))
    pages = layout.paginate(rows.groups, rows.heads, rows.single, 20)
    got = np.concatenate([np.concatenate(g) for g, _, _ in pages])
    np.testing.assert_array_equal(np.sort(got), np.arange(res.k))
    for g, h, one in pages:
        n = layout.units(res.k, g, h, one)
        assert n <= 20 + 1e-9


@pytest.mark.slow
def test_loo_plot_caps_its_rows(big):
    tab = _fake_loo(big)
    ax = plots.loo_plot(big, max_rows=40, loo=tab)
    assert ax.figure.mlmeta_rows == (40, 300)
    assert ax.figure.get_size_inches()[1] < 12
    shown = [int(t.get_text()) for t in ax.get_yticklabels()]
    move = np.abs(tab["beta"].to_numpy() - big.core.beta[0])
    top = set(tab["left_out"].to_numpy()[np.argsort(-move)[:40]].tolist())
    assert set(shown) == top and shown == sorted(shown)  # the 40 that move it most, in order


def _fake_loo(res):
    """A leave-one-out table shaped like res.loo_cluster() (values made up: the cap only
    chooses the studies that move the estimate most)."""
    rng = np.random.default_rng(1)
    b = res.core.beta[0] + rng.normal(0, 0.01, 300)
    return pd.DataFrame(
        {"left_out": np.arange(1, 301), "beta": b, "ci_lb": b - 0.1, "ci_ub": b + 0.1}
    )

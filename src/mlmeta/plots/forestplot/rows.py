"""The rows of a forest plot: what each row shows, before any drawing.

Two levels:

* effect level -- one row per effect size, grouped under its study (the outer random level):
  a study with several effect sizes gets a bold heading row and its effects indented below
  it; a study with one effect size is a single row labelled with the study;
* study level -- one row per study: the effects of a study combined by generalised least
  squares with the fitted within-study covariance (the study's block of the marginal
  covariance V without the between-study component), i.e. theta_j = 1'W_j y_j / 1'W_j 1 with
  SE (1'W_j 1)^(-1/2), W_j = (V_j - sigma2_1 J)^(-1); the study's weight is the sum of its
  effects' weights, and the number of effect sizes is shown. With one effect size the row is
  that effect size. This is how metafor's ``aggregate.escalc`` combines dependent effects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlmeta.core.dist import norm_isf
from mlmeta.errors import InputError
from mlmeta.plots.base import Scale, column

__all__ = ["SORTS", "ForestRows", "effect_rows", "study_rows"]

SORTS = (False, None, True, "effect", "weight")


@dataclass
class ForestRows:
    """Rows in display order within groups.

    ``est``, ``lb``, ``ub`` (on the axis scale), ``weight`` (%), ``label`` and ``n_effects``
    (None at the effect level) are per row, indexed 0..n-1 in the order of the model's data
    (effect level) or of the studies (study level); ``groups`` lists the row indices of each
    group in display order and ``heads`` the group headings (None: a group without heading).
    ``single`` marks groups of one row drawn without a heading (the label is the study's)."""

    est: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    weight: np.ndarray
    label: list[str]
    groups: list[np.ndarray]
    heads: list[str | None]
    single: list[bool] = field(default_factory=list)
    n_effects: np.ndarray | None = None
    level: str = "effect"
    grouped: bool = False
    model_y: np.ndarray | None = None  # model-scale estimates (for sorting)

    @property
    def n(self) -> int:
        return len(self.est)


def _study_heads(res, uniq, groups, study_labels) -> list[str]:
    rand = res.data.random
    if study_labels is None:
        return [f"{rand[0]} {u}" for u in uniq]
    if isinstance(study_labels, str):
        col = column(res, study_labels, "study_labels")
        return [str(col.iloc[g[0]]) for g in groups]
    if isinstance(study_labels, Mapping):
        return [str(study_labels.get(u, study_labels.get(str(u), f"{rand[0]} {u}"))) for u in uniq]
    raise InputError(
        "study_labels must be a column name or a mapping from the study "
        f"id to its label; got {type(study_labels).__name__}"
    )


def _check_sort(sort) -> None:
    if sort not in SORTS:
        raise InputError(f"sort must be False, True, 'effect' or 'weight'; got {sort!r}")


def _order(groups, heads, single, y, w, sort, grouped):
    if not sort:
        return groups, heads, single
    key = (lambda idx: y[idx]) if sort in (True, "effect") else (lambda idx: -w[idx])
    groups = [g[np.argsort(key(g), kind="stable")] for g in groups]
    if grouped:

        def gkey(g):
            if sort == "weight":
                return -np.sum(w[g])
            ww = np.clip(w[g], 1e-12, None)
            return float(np.sum(ww * y[g]) / np.sum(ww))

        o = np.argsort([gkey(g) for g in groups], kind="stable")
        groups = [groups[i] for i in o]
        heads = [heads[i] for i in o]
        single = [single[i] for i in o]
    return groups, heads, single


def effect_rows(res, f: Scale, *, labels=None, study_labels=None, sort=False) -> ForestRows:
    """One row per effect size (see the module docstring)."""
    _check_sort(sort)
    y, v, k = res.data.y, res.data.v, res.k
    zc = norm_isf((1 - res.level) / 2)
    se = np.sqrt(v)
    w = res.weights()
    rand = res.data.random
    frame = res.data.frame.reset_index(drop=True)
    grouped = bool(rand) and len(pd.unique(res.data.factors[0])) < k
    if labels is None:
        if grouped and len(rand) >= 2:
            lab = [f"{rand[-1]} {x}" for x in frame[rand[-1]]]
        elif grouped:
            lab = None  # numbered within the study below
        elif rand:
            lab = [f"{rand[0]} {x}" for x in frame[rand[0]]]
        else:
            lab = [f"Effect size {i + 1}" for i in range(k)]
    elif isinstance(labels, str):
        lab = [str(x) for x in column(res, labels, "labels")]
    else:
        lab = [str(x) for x in labels]
        if len(lab) != k:
            raise InputError(f"labels has {len(lab)} entries but the model has {k} effect sizes")
    if grouped:
        codes, uniq = pd.factorize(pd.Series(res.data.factors[0]), sort=False)
        groups = [np.flatnonzero(codes == c) for c in range(len(uniq))]
        if lab is None:
            lab = [""] * k
            for g in groups:
                for n, i in enumerate(g):
                    lab[i] = f"effect size {n + 1}"
        heads: list[str | None] = list(_study_heads(res, uniq, groups, study_labels))
        single = [len(g) == 1 for g in groups]
    else:
        groups, heads, single = [np.arange(k)], [None], [False]
    groups, heads, single = _order(groups, heads, single, y, w, sort, grouped)
    return ForestRows(
        est=f(y),
        lb=f(y - zc * se),
        ub=f(y + zc * se),
        weight=w,
        label=list(lab or []),
        groups=groups,
        heads=heads,
        single=single,
        level="effect",
        grouped=grouped,
        model_y=np.asarray(y, dtype=float),
    )


def study_estimates(res) -> pd.DataFrame:
    """Per study (outer random level, in order of first appearance): the GLS combination of
    its effect sizes under the fitted within-study covariance, its SE, its weight (%) and
    its number of effect sizes (see the module docstring)."""
    if not res.data.random:
        raise InputError(
            "a study-level forest plot needs a model with a study level (random effects)"
        )
    if getattr(res, "is_structured", False):
        raise InputError(
            "a study-level forest plot needs one nesting of random effects "
            "(~ 1 | study/...): with crossed or '~ inner | outer' terms, R or V "
            "there is no between-study component to separate; use level='effect'"
        )
    codes, labels = res.cluster_codes(None)
    w = res.weights()
    s1 = float(res.core.sigma2[0])
    rows = {}
    for idx, Vc in res.marginal_blocks(codes):
        Vw = Vc - s1  # drop the between-study component (constant within the study)
        one = np.ones(len(idx))
        a = np.linalg.solve(Vw, one)
        den = float(one @ a)
        rows[int(codes[idx[0]])] = (
            float(a @ res.data.y[idx]) / den,
            1.0 / np.sqrt(den),
            float(np.sum(w[idx])),
            len(idx),
            int(idx.min()),
        )
    order = sorted(rows, key=lambda c: rows[c][4])  # first appearance in the data
    return pd.DataFrame(
        {
            "study": [labels[c] for c in order],
            "yi": [rows[c][0] for c in order],
            "se": [rows[c][1] for c in order],
            "weight": [rows[c][2] for c in order],
            "k": [rows[c][3] for c in order],
            "first_row": [rows[c][4] for c in order],
        }
    )


def study_rows(res, f: Scale, *, study_labels=None, sort=False) -> ForestRows:
    """One row per study (see the module docstring)."""
    _check_sort(sort)
    st = study_estimates(res)
    zc = norm_isf((1 - res.level) / 2)
    y, se = st["yi"].to_numpy(), st["se"].to_numpy()
    w = st["weight"].to_numpy()
    n = len(st)
    groups = [np.arange(n)]
    firsts = st["first_row"].to_numpy()
    frame_groups = [np.array([r]) for r in firsts]
    lab = _study_heads(res, st["study"].tolist(), frame_groups, study_labels)
    groups, heads, single = _order(groups, [None], [False], y, w, sort, False)
    return ForestRows(
        est=f(y),
        lb=f(y - zc * se),
        ub=f(y + zc * se),
        weight=w,
        label=lab,
        groups=groups,
        heads=heads,
        single=single,
        n_effects=st["k"].to_numpy(),
        level="study",
        grouped=False,
        model_y=y,
    )

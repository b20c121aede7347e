"""Nested random-effects structure: group bookkeeping for the O(k) likelihood.

A model with random effects ``~ 1 | a/b/c`` (outer to inner) has one variance component per
level; the level-``l`` groups are the combinations of the first ``l + 1`` factors, exactly as
metafor builds them (inner labels may restart within each outer unit). The marginal covariance is

    V = diag(v) + sum_l sigma2_l Z_l Z_l',

which is block-diagonal by outermost group, and inside a block each level adds a constant to a
nested sub-block. After sorting the rows lexicographically by their group codes, every group of
every level is a contiguous run of rows and of child groups; the likelihood then needs only
segment sums (``np.add.reduceat``) over those runs.

A level whose groups are all single rows contributes ``sigma2_l I`` and is handled as a diagonal
term. This module knows nothing of pandas, formulas or printing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NestedStructure", "build_structure"]


@dataclass(frozen=True)
class NestedStructure:
    """Sorted nested grouping of ``k`` rows into ``L`` levels (outer to inner).

    Attributes
    ----------
    k : number of rows.
    order : permutation that sorts the rows by (level-0 code, level-1 code, ...).
    codes : per level, the group code of each *sorted* row (0..n_groups-1, increasing).
    n_groups : number of groups per level.
    diag_levels : levels whose groups are all single rows (a diagonal contribution).
    group_levels : the remaining levels, outer to inner.
    row_starts : for the innermost group level, the sorted-row index where each group starts.
    child_starts : for each group level but the innermost, where each of its groups starts in the
        array of groups of the next inner *group* level.
    """

    k: int
    order: np.ndarray
    codes: tuple[np.ndarray, ...]
    n_groups: tuple[int, ...]
    diag_levels: tuple[int, ...]
    group_levels: tuple[int, ...]
    row_starts: np.ndarray | None
    child_starts: tuple[np.ndarray, ...]

    @property
    def n_levels(self) -> int:
        return len(self.codes)

    def top_codes(self) -> np.ndarray:
        """Outermost group code of each sorted row (0 for every row without random effects)."""
        if not self.codes:
            return np.zeros(self.k, dtype=np.int64)
        return self.codes[0]


def _combine(prev: np.ndarray | None, col: np.ndarray) -> np.ndarray:
    """Codes of the combinations of ``prev`` (already integer codes) and ``col``."""
    _, c = np.unique(col, return_inverse=True)
    c = c.astype(np.int64).ravel()
    if prev is None:
        return c
    key = prev * (int(c.max()) + 1 if c.size else 1) + c
    _, out = np.unique(key, return_inverse=True)
    return out.astype(np.int64).ravel()


def build_structure(factors: list[np.ndarray], k: int) -> NestedStructure:
    """Build the nested structure from the raw factor columns, outer to inner.

    ``factors[l]`` holds the labels of level ``l`` (any sortable dtype). The level-``l`` groups are
    the distinct combinations of ``factors[0..l]`` (metafor's ``~ 1 | a/b`` convention).
    """
    level_codes: list[np.ndarray] = []
    prev = None
    for f in factors:
        prev = _combine(prev, np.asarray(f))
        level_codes.append(prev)
    if not level_codes:
        order = np.arange(k)
        return NestedStructure(k, order, (), (), (), (), None, ())
    # Combination codes are increasing in (outer, inner) lexicographic order because np.unique
    # sorts the combined keys; sorting by the innermost code therefore sorts every level.
    order = np.argsort(level_codes[-1], kind="stable")
    codes = tuple(c[order] for c in level_codes)
    n_groups = tuple(int(c.max()) + 1 if c.size else 0 for c in codes)
    diag = tuple(lv for lv, g in enumerate(n_groups) if g == k)
    grp = tuple(lv for lv, g in enumerate(n_groups) if g != k)
    row_starts = None
    child_starts: list[np.ndarray] = []
    if grp:
        inner = codes[grp[-1]]
        row_starts = np.flatnonzero(np.r_[True, inner[1:] != inner[:-1]])
        for a, b in zip(grp[:-1], grp[1:]):
            # first group of level b inside each group of level a
            ca, cb = codes[a], codes[b]
            first_rows = np.flatnonzero(np.r_[True, cb[1:] != cb[:-1]])  # start row of each b group
            parent_of_b = ca[first_rows]
            child_starts.append(np.flatnonzero(np.r_[True, parent_of_b[1:] != parent_of_b[:-1]]))
    return NestedStructure(k, order, codes, n_groups, diag, grp, row_starts, tuple(child_starts))

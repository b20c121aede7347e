"""Bundled example data sets.

``alliance_like`` is SIMULATED: shaped like Iovoli et al. (2024) — 27 studies, 48 correlations
between patients' interpersonal problems and the therapeutic alliance, moderators phase, rater,
measure and treatment — because the real per-study data are not public. It is generated
(``scripts/make_alliance_like.py``) to tell that paper's story: a negative association that is
stronger when the alliance is measured early in therapy. It is not real study data. The others are published data sets as distributed with R's metadat package:
Credé et al. (2010), Konstantopoulos (2011), Assink & Wibbelink (2016), Molloy et al. (2014).

The examples of the random-effects structures (README, "Random-effects structures") come with
their matrices in ``Example.matrices``: ``berkey1998`` and ``ishak2007`` (metadat; a known
sampling covariance ``V`` in long format, row,col,value), ``lim2014`` (metadat; the
phylogenetic correlation ``R_phylo`` of its 98 species, indexed by species), and two SIMULATED
sets: ``crossed_lab`` (effect sizes in studies, crossed with 8 labs) and ``multivar_labs``
(studies nested in labs reporting up to three outcomes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

import pandas as pd

from mlmeta.errors import InputError

__all__ = ["EXAMPLES", "STRUCTURE_EXAMPLES", "Example", "load_example"]


@dataclass(frozen=True)
class Example:
    name: str
    title: str
    notice: str
    simulated: bool
    data: pd.DataFrame
    matrices: dict = field(default_factory=dict)  # name -> DataFrame (V long, R by level)


EXAMPLES = {
    "alliance_like": (
        "Interpersonal problems and therapeutic alliance (SIMULATED, shaped like Iovoli et al. 2024)",
        "SIMULATED DATA: generated (scripts/make_alliance_like.py) to resemble the design and "
        "story of Iovoli et al. (2024) — 27 studies, 48 correlations, about 6,200 patients, an "
        "association that is stronger early in therapy. The real per-study data are not public; "
        "these numbers are not the published results.",
        True,
    ),
    "crede2010": (
        "Class attendance and grades (Credé, Roch & Kieszczynka, 2010)",
        "Published data (metadat::dat.crede2010).",
        False,
    ),
    "crede2010_grade": (
        "Class attendance and grades, grade criterion only (Credé et al., 2010)",
        "Published data (metadat::dat.crede2010), criterion = grade.",
        False,
    ),
    "konstantopoulos2011": (
        "Modified school calendars and achievement (Konstantopoulos, 2011)",
        "Published data (metadat::dat.konstantopoulos2011).",
        False,
    ),
    "assink2016": (
        "Risk factors for juvenile delinquency (Assink & Wibbelink, 2016)",
        "Published tutorial data (metadat::dat.assink2016).",
        False,
    ),
    "molloy2014": (
        "Conscientiousness and medication adherence (Molloy et al., 2014)",
        "Published data (metadat::dat.molloy2014).",
        False,
    ),
    "berkey1998": (
        "Periodontal surgery vs non-surgical treatment, two outcomes (Berkey et al., 1998)",
        "Published data (metadat::dat.berkey1998), plus year_c = year - "
        "1983; matrices['V']: the sampling covariance (2 x 2 per trial).",
        False,
    ),
    "ishak2007": (
        "Deep-brain stimulation, UPDRS change over four time points (Ishak et al., 2007)",
        "Published data (metadat::dat.ishak2007), long format as on its help "
        "page; matrices['V']: AR(1) sampling correlation 0.97 within study.",
        False,
    ),
    "lim2014": (
        "Offspring size and number across 98 species (Lim et al., 2014)",
        "Published data (metadat::dat.lim2014, o_o_adj), plus esid and phylo (a copy of "
        "species); yi/vi = ZCOR; matrices['R_phylo']: the phylogenetic correlation "
        "(ape::vcv, Grafen branch lengths).",
        False,
    ),
    "crossed_lab": (
        "Effect sizes in studies, crossed with labs (SIMULATED)",
        "SIMULATED DATA (seed 20241201): 24 studies with 1-4 effect sizes, each from "
        "one of 8 labs drawn independently of the study.",
        True,
    ),
    "multivar_labs": (
        "Three outcomes in studies nested in labs (SIMULATED)",
        "SIMULATED DATA (seed 20241205): 16 labs with 2-4 studies each, each study "
        "reporting 1-3 of the outcomes anx, dep, str.",
        True,
    ),
}

#: examples of the random-effects structures (crossed terms, ``~ inner | outer``, R, V): the
#: web page, which fits nested models, does not offer them
STRUCTURE_EXAMPLES = frozenset(
    {"berkey1998", "ishak2007", "lim2014", "crossed_lab", "multivar_labs"}
)

#: example -> matrix name -> (file, read with the first column as index)
MATRICES = {
    "berkey1998": {"V": ("berkey1998_V.csv", False)},
    "ishak2007": {"V": ("ishak2007_V.csv", False)},
    "lim2014": {"R_phylo": ("lim2014_R_phylo.csv", True)},
}


def load_example(name: str) -> Example:
    """Load a bundled example by name (see :data:`EXAMPLES`), with its matrices (a known
    sampling covariance ``V`` in long format, a correlation matrix ``R_...`` indexed by level)."""
    if name not in EXAMPLES:
        raise InputError(f"unknown example {name!r}; available: {', '.join(EXAMPLES)}")
    title, notice, sim = EXAMPLES[name]
    root = resources.files("mlmeta.examples").joinpath("data")
    with root.joinpath(f"{name}.csv").open("rb") as fh:
        df = pd.read_csv(fh)
    mats = {}
    for key, (fname, indexed) in MATRICES.get(name, {}).items():
        with root.joinpath(fname).open("rb") as fh:
            mats[key] = pd.read_csv(fh, index_col=0 if indexed else None)
    return Example(name, title, notice, sim, df, mats)

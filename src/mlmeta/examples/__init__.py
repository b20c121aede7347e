"""Bundled example data sets.

``alliance_like`` is SIMULATED: shaped like Iovoli et al. (2024) — 27 studies, 48 correlations
between patients' interpersonal problems and the therapeutic alliance, moderators phase, rater,
measure and treatment — because the real per-study data are not public. It is generated
(``scripts/make_alliance_like.py``) to tell that paper's story: a negative association that is
stronger when the alliance is measured early in therapy. It is not real study data. The others are published data sets as distributed with R's metadat package:
Credé et al. (2010), Konstantopoulos (2011), Assink & Wibbelink (2016), Molloy et al. (2014).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import pandas as pd

from mlmeta.errors import InputError

__all__ = ["Example", "load_example", "EXAMPLES"]


@dataclass(frozen=True)
class Example:
    name: str
    title: str
    notice: str
    simulated: bool
    data: pd.DataFrame


EXAMPLES = {
    "alliance_like": (
        "Interpersonal problems and therapeutic alliance (SIMULATED, shaped like Iovoli et al. 2024)",
        "SIMULATED DATA: generated (scripts/make_alliance_like.py) to resemble the design and "
        "story of Iovoli et al. (2024) — 27 studies, 48 correlations, about 6,200 patients, an "
        "association that is stronger early in therapy. The real per-study data are not public; "
        "these numbers are not the published results.",
        True,
    ),
    "crede2010": ("Class attendance and grades (Credé, Roch & Kieszczynka, 2010)",
                  "Published data (metadat::dat.crede2010).", False),
    "crede2010_grade": ("Class attendance and grades, grade criterion only (Credé et al., 2010)",
                        "Published data (metadat::dat.crede2010), criterion = grade.", False),
    "konstantopoulos2011": ("Modified school calendars and achievement (Konstantopoulos, 2011)",
                            "Published data (metadat::dat.konstantopoulos2011).", False),
    "assink2016": ("Risk factors for juvenile delinquency (Assink & Wibbelink, 2016)",
                   "Published tutorial data (metadat::dat.assink2016).", False),
    "molloy2014": ("Conscientiousness and medication adherence (Molloy et al., 2014)",
                   "Published data (metadat::dat.molloy2014).", False),
}


def load_example(name: str) -> Example:
    """Load a bundled example by name (see :data:`EXAMPLES`)."""
    if name not in EXAMPLES:
        raise InputError(f"unknown example {name!r}; available: {', '.join(EXAMPLES)}")
    title, notice, sim = EXAMPLES[name]
    with resources.files("mlmeta.examples").joinpath(f"data/{name}.csv").open("rb") as fh:
        df = pd.read_csv(fh)
    return Example(name, title, notice, sim, df)

"""Simulation studies of meta-analytic methods.

* :func:`run` — the engine: conditions x replications in chunks, on a process pool, a
  ``concurrent.futures`` executor or a Dask cluster, with reproducible seeds
  (``numpy.random.SeedSequence`` spawning) and resumable Parquet checkpoints;
* :func:`generate_three_level` — the data-generating model (three-level, correlated sampling
  errors, optional moderators);
* :func:`analyse_che_rve`, :func:`analyse_mlma`, :func:`analyse_ce_rve`, :func:`analyse_all` —
  working models fitted through mlmeta's API;
* :func:`summarise` — bias, variance, RMSE, rejection rate, coverage and interval width with
  Monte Carlo SEs (simhelpers' definitions).

Example::

    from mlmeta import sim
    design = [{"J": J, "mu": 0.2, "tau": 0.2, "omega": 0.1, "rho": 0.5, "k": 4, "sigma2": 0.04}
              for J in (10, 20)]
    results = sim.run(design, sim.generate_three_level, sim.analyse_che_rve, reps=500, seed=1)
    print(sim.summarise(results, true_value="true_value"))
"""

from mlmeta.sim.analyse import (
    aggregate_studies,
    analyse_all,
    analyse_ce_rve,
    analyse_che_rve,
    analyse_mlma,
)
from mlmeta.sim.engine import conditions_of, replication_rng, run
from mlmeta.sim.generate import generate_three_level
from mlmeta.sim.summarise import performance, summarise

__all__ = [
    "aggregate_studies",
    "analyse_all",
    "analyse_ce_rve",
    "analyse_che_rve",
    "analyse_mlma",
    "conditions_of",
    "generate_three_level",
    "performance",
    "replication_rng",
    "run",
    "summarise",
]

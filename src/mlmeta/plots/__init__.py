"""Publication-quality plots of a fitted multilevel model (matplotlib, imported lazily).

``import mlmeta`` does not import matplotlib: every function here imports it when called
(install it with ``pip install mlmeta[plot]``). Each plotting function takes a fitted
:class:`mlmeta.results.MetaResults`, draws into ``ax`` (a new figure is created when ``ax`` is
None) and returns the Axes; extra keyword arguments go to the matplotlib call that draws the
effect sizes (e.g. ``color=``, ``alpha=``).

* :func:`forest` -- effect sizes grouped under their study, or one row per study, the summary
  diamond and the prediction interval (metafor's ``forest.rma``); :func:`forest_pages` writes
  a long forest as a multi-page PDF (:mod:`.forestplot`: rows, layout, axis);
* :func:`funnel` -- contour-enhanced funnel plot (:mod:`.funnelplot`);
* :func:`orchard` -- orchard plot of a categorical moderator (:mod:`.orchardplot`);
* :func:`bubble` -- bubble plot of a continuous moderator (:mod:`.bubbleplot`);
* :func:`profile_plot` -- profile log-likelihood of the variance components
  (:mod:`.profileplot`);
* :func:`loo_plot` -- leave-one-cluster-out estimates (:mod:`.looplot`);
* :func:`save_figure` -- write a figure as PNG and PDF (:mod:`.save`).

Effect sizes of ``measure="ZCOR"`` (Fisher's z) are shown back-transformed to correlations
(r = tanh z) by default; ``transf="none"`` keeps the z scale. Log odds ratios stay on the log
scale and are labelled so; ``transf="exp"`` draws odds ratios on a log axis.

References
----------
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. Journal of
Statistical Software, 36(3), 1-48.
"""

from __future__ import annotations

from mlmeta.plots.bubbleplot import bubble
from mlmeta.plots.forestplot import auto_level, forest, forest_height, forest_pages
from mlmeta.plots.funnelplot import funnel
from mlmeta.plots.looplot import loo_plot
from mlmeta.plots.orchardplot import orchard
from mlmeta.plots.profileplot import profile_plot
from mlmeta.plots.save import save_figure

__all__ = [
    "auto_level",
    "bubble",
    "forest",
    "forest_height",
    "forest_pages",
    "funnel",
    "loo_plot",
    "orchard",
    "profile_plot",
    "save_figure",
]

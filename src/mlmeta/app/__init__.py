"""The local web page: ``mlmeta app`` (Shiny for Python), for people who do not program.

A thin shell over the same API as ``mlmeta run``: the page's controls stand for the keys of an
analysis file (:mod:`mlmeta.app.mapping`), a run writes the same report folder as the command
line, and the page shows that folder's numbers and figures and offers it, and the analysis file
that reproduces it, as downloads. Modules: :mod:`~mlmeta.app.ui` (layout),
:mod:`~mlmeta.app.server` (reactive logic), :mod:`~mlmeta.app.guess` (column roles),
:mod:`~mlmeta.app.mapping` (controls <-> analysis-file keys), :mod:`~mlmeta.app.runner` and
:mod:`~mlmeta.app.worker` (runs in a child process, cancellable), :mod:`~mlmeta.app.results`
(the report folder on the page), :mod:`~mlmeta.app.upload` (upload size limit) and
:mod:`~mlmeta.app.cli` (``mlmeta app``).

Importing this package imports no Shiny; :func:`create_app` does.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["create_app"]


def create_app(root: str | Path, max_upload: int | None = None):
    """The page as an ASGI application (Shiny app inside the upload-size limit).

    ``root``: an existing folder for the per-session folders (the caller removes it);
    ``max_upload``: upload limit in bytes (default :func:`mlmeta.app.upload.max_upload_bytes`).
    """
    from shiny import App

    from mlmeta.app.api import EXAMPLES
    from mlmeta.app.server import make_server
    from mlmeta.app.ui import app_ui
    from mlmeta.app.upload import UploadLimit
    from mlmeta.examples import STRUCTURE_EXAMPLES

    examples = {
        name: title
        for name, (title, _notice, _sim) in EXAMPLES.items()
        if name not in STRUCTURE_EXAMPLES
    }
    shiny_app = App(app_ui(examples), make_server(Path(root), examples))
    return UploadLimit(shiny_app, max_upload)

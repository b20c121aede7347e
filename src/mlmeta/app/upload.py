"""A size limit on uploads, enforced before the bytes are stored.

Shiny for Python stores whatever a browser posts to ``/session/<id>/upload/<job>``; it has no
limit of its own. :class:`UploadLimit` wraps the ASGI app: a POST to an upload URL whose
``Content-Length`` exceeds the limit is answered ``413`` at once, without reading the body, and
a body sent without a length (chunked) is counted as it streams in and cut off, with the same
``413``, as soon as it passes the limit (the part already received is discarded by Shiny when
the session ends). The page checks ``file.size`` in the browser first, so a person sees the
refusal before anything is sent (:data:`CLIENT_CHECK_JS`).
"""

from __future__ import annotations

import os
import re

__all__ = [
    "DEFAULT_MAX_UPLOAD",
    "ENV_MAX_UPLOAD",
    "UploadLimit",
    "client_check_js",
    "max_upload_bytes",
    "too_large_message",
]

DEFAULT_MAX_UPLOAD = 100 * 1024 * 1024
#: environment variable overriding the limit (bytes), e.g. for tests
ENV_MAX_UPLOAD = "MLMETA_APP_MAX_UPLOAD"
_UPLOAD_PATH = re.compile(r"/session/[^/]+/upload/")


def max_upload_bytes() -> int:
    """The upload limit in bytes: ``$MLMETA_APP_MAX_UPLOAD`` if set (a positive integer), else
    100 MB."""
    text = os.environ.get(ENV_MAX_UPLOAD, "").strip()
    if text:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n > 0:
            return n
    return DEFAULT_MAX_UPLOAD


def _size_text(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.0f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n} bytes"


def too_large_message(limit: int, size: int | None = None) -> str:
    got = f" ({_size_text(size)})" if size is not None else ""
    return (
        f"the file is too large{got}: uploads are limited to {_size_text(limit)}; "
        "run large data sets with mlmeta run on the command line"
    )


class UploadLimit:
    """ASGI middleware refusing uploads over ``limit`` bytes with 413 (see module docstring)."""

    def __init__(self, app, limit: int | None = None):
        self.app = app
        self.limit = max_upload_bytes() if limit is None else int(limit)

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or not _UPLOAD_PATH.search(scope.get("path", ""))
        ):
            await self.app(scope, receive, send)
            return
        length = None
        for k, v in scope.get("headers", []):
            if k.lower() == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    length = None
        if length is not None and length > self.limit:
            await self._refuse(send, length)
            return
        seen = 0
        over = False
        started = False

        async def counting_receive():
            nonlocal seen, over
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    over = True
                    return {"type": "http.disconnect"}  # the app stops reading
            return msg

        async def guarded_send(msg):
            nonlocal started
            if over:
                return  # the app's reply to a cut-off body is replaced by ours
            started = True
            await send(msg)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._refuse(send, None)

    async def _refuse(self, send, size: int | None) -> None:
        body = too_large_message(self.limit, size).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def client_check_js(limit: int, input_ids: tuple[str, ...]) -> str:
    """A script refusing, in the browser, files over ``limit`` bytes chosen in the file inputs
    ``input_ids`` before Shiny uploads them; the refusal is reported to the server as the input
    ``upload_refused`` (name, size) so the page shows it with the other messages."""
    ids = ", ".join(f'"{i}"' for i in input_ids)
    return f"""
(function() {{
  var LIMIT = {int(limit)};
  var IDS = [{ids}];
  function refuse(el, file) {{
    el.value = "";
    var info = {{id: el.id, name: file.name, size: file.size, limit: LIMIT, at: Date.now()}};
    if (window.Shiny && Shiny.setInputValue) {{
      Shiny.setInputValue("upload_refused", info, {{priority: "event"}});
    }}
  }}
  function check(ev, files) {{
    var el = ev.target;
    if (!el || IDS.indexOf(el.id) < 0 || !files) return;
    for (var i = 0; i < files.length; i++) {{
      if (files[i].size > LIMIT) {{
        ev.stopImmediatePropagation();
        ev.preventDefault();
        refuse(el, files[i]);
        return;
      }}
    }}
  }}
  // capture phase: runs before Shiny's own handler on the input starts the upload
  document.addEventListener("change", function(ev) {{
    if (ev.target && ev.target.files) check(ev, ev.target.files);
  }}, true);
  document.addEventListener("drop", function(ev) {{
    var t = ev.target && ev.target.closest ? ev.target.closest(".input-group") : null;
    var el = t ? t.querySelector("input[type=file]") : null;
    if (el && ev.dataTransfer) check({{target: el, stopImmediatePropagation: function() {{
      ev.stopImmediatePropagation(); }}, preventDefault: function() {{ ev.preventDefault(); }}}},
      ev.dataTransfer.files);
  }}, true);
}})();
"""

"""``mlmeta app [--host HOST] [--port PORT] [--no-browser]``: serve the web page locally.

Serves on 127.0.0.1 (this computer only) at port 8765, or a free port when 8765 is taken,
prints the address and opens it in the default browser when there is a display (macOS,
Windows, or X11/Wayland with ``DISPLAY``/``WAYLAND_DISPLAY`` set) unless ``--no-browser``.
Ctrl-C or SIGTERM stops it cleanly: running analyses are cancelled, the temporary folder of the
sessions is removed, and the exit status is 0.

Nothing here imports Shiny until ``run`` is called, so ``mlmeta --help`` stays fast; without
Shiny installed the command ends with one line saying to ``pip install 'mlmeta[app]'``.
"""

from __future__ import annotations

import argparse

__all__ = ["DEFAULT_PORT", "add_parser", "has_display", "run"]

DEFAULT_PORT = 8765


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name,
        help="open the web page (upload data, run, download the report)",
        description="Serve mlmeta's web page on this computer.",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this computer only)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port (default {DEFAULT_PORT}, or a free one if that is taken)",
    )
    p.add_argument(
        "--no-browser", action="store_true", help="do not open a browser; only print the address"
    )
    return p


def has_display(platform: str | None = None, environ=None) -> bool:
    """Can a browser window be opened here?"""
    import os
    import sys

    platform = sys.platform if platform is None else platform
    environ = os.environ if environ is None else environ
    if platform == "darwin" or platform.startswith("win"):
        return True
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


def _bind(host: str, port: int | None):
    import socket

    from mlmeta.errors import MlmetaError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    candidates = [port] if port is not None else [DEFAULT_PORT, 0]
    last = None
    for p in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, p))
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.listen(128)
        sock.set_inheritable(True)
        return sock
    if port is not None:
        raise MlmetaError(
            f"--port {port}: cannot listen on {host}:{port} "
            f"({getattr(last, 'strerror', None) or last})"
        )
    raise MlmetaError(
        f"--host {host!r}: cannot listen on it ({getattr(last, 'strerror', None) or last})"
    )


def run(args) -> int:
    import contextlib
    import shutil
    import signal
    import sys
    import tempfile
    import threading

    from mlmeta.errors import MlmetaError

    try:
        import shiny  # noqa: F401
        import uvicorn
    except ImportError:
        raise MlmetaError("the web page needs Shiny: pip install 'mlmeta[app]'") from None
    if args.port is not None and not 0 < args.port < 65536:
        raise MlmetaError(f"--port must be between 1 and 65535; got {args.port}")

    from mlmeta.app import create_app
    from mlmeta.app.runner import cancel_all, warm_up

    sock = _bind(args.host, args.port)
    root = tempfile.mkdtemp(prefix="mlmeta-app-")
    try:
        app = create_app(root)
        port = sock.getsockname()[1]
        shown = f"[{args.host}]" if ":" in args.host else args.host
        url = f"http://{shown}:{port}/"

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):
                # like uvicorn's, but a signal ends the server without being re-raised, so the
                # command exits 0 after cleaning up
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                sigs = [signal.SIGINT, signal.SIGTERM]
                old = {s: signal.signal(s, self.handle_exit) for s in sigs}
                try:
                    yield
                finally:
                    for s, h in old.items():
                        signal.signal(s, h)

        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", timeout_graceful_shutdown=3, ws="auto"
        )
        server = Server(config)
        warm_up()
        print(f"mlmeta app: {url}  (Ctrl-C to stop)", flush=True)
        if not args.no_browser and has_display():

            def open_browser():
                import webbrowser

                with contextlib.suppress(Exception):
                    webbrowser.open(url)

            threading.Timer(1.0, open_browser).start()
        server.run(sockets=[sock])
    finally:
        cancel_all()
        sock.close()
        shutil.rmtree(root, ignore_errors=True)
    print("mlmeta app: stopped", file=sys.stderr, flush=True)
    return 0

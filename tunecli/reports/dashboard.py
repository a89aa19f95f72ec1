"""optuna-dashboard over a storage, served from this process (its WSGI app, on a threaded
server: the page asks for several things at once) so ``--port 0`` can say which port it got."""

from __future__ import annotations

from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tunecli.errors import SpecError

__all__ = ["serve"]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no line per request
        pass


def serve(storage: Any, host: str, port: int) -> WSGIServer:
    """A server bound to ``host:port`` (not yet serving: ``serve_forever``)."""
    try:
        import optuna_dashboard
    except ImportError:
        raise SpecError("tunecli dashboard needs optuna-dashboard", source="dashboard",
                        fix="pip install 'tunecli[dashboard]'.") from None
    try:
        return make_server(host, port, optuna_dashboard.wsgi(storage), server_class=_Server,
                           handler_class=_Quiet)
    except OSError as exc:
        raise SpecError(f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                        source="--port", fix="Give another --port, or --port 0 for any free "
                                             "one.") from None

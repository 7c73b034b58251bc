"""The bitloot example shop on Flask, served by werkzeug's threaded server (hardened).

    python examples/flask_server.py --host 127.0.0.1 --port 8001 --data-dir ./.bitloot-data-flask

Thin on purpose: every request goes to ``ShopApi.wsgi_app()``, the whole API as a
standard WSGI application, so this server and the FastAPI one speak the same contract.
The WSGI app refuses a larger ``Content-Length`` unread and cuts a chunked upload off at
the limit. Each request has a thread of its own, so an event stream waits between its
polls in its own thread. ``make_server`` bounds what slow clients hold: a request line
and headers must arrive within ``serve.REQUEST_READ_SECONDS``, every socket read or
write waits at most that long, and at most ``serve.MAX_CONNECTIONS`` connections are
served at once (more are closed on arrival).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from flask import Flask
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from bitloot_adapters.bootstrap import Shop
from bitloot_adapters.http_api import ShopApi
from bitloot_adapters.serve import (
    MAX_CONNECTIONS,
    REQUEST_READ_SECONDS,
    hide_url_tokens,
    parse_args,
    prepare_shop,
)


def create_app(shop: Shop) -> Flask:
    """A Flask app whose every request is answered by ``ShopApi.wsgi_app()``.

    A shop's own Flask app would keep its routes and mount bitloot the same way (for
    instance under a path prefix with werkzeug's ``DispatcherMiddleware``). The WSGI app
    reads at most ``MAX_BODY_BYTES`` of a body and streams the event stream in the
    request's own thread.
    """
    app = Flask("bitloot", static_folder=None)  # the page files are served by the API
    hide_url_tokens()
    app.wsgi_app = ShopApi(shop).wsgi_app()  # type: ignore[method-assign]
    return app


class DeadlineHandler(WSGIRequestHandler):
    """werkzeug's handler with a deadline on each request's line and headers, and a
    timeout (``timeout``, set by socketserver on the socket) on every read and write."""

    timeout = REQUEST_READ_SECONDS
    _deadline: threading.Timer | None = None

    def handle_one_request(self) -> None:
        self._deadline = threading.Timer(self.timeout, self._too_slow)
        self._deadline.daemon = True
        self._deadline.start()
        try:
            super().handle_one_request()
        finally:
            self._deadline.cancel()

    def run_wsgi(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()  # the headers are in; the body has the socket timeout
        super().run_wsgi()

    def _too_slow(self) -> None:
        with contextlib.suppress(OSError):  # already gone
            self.connection.shutdown(socket.SHUT_RDWR)


class LimitedServer(ThreadedWSGIServer):
    """werkzeug's threaded server serving at most ``MAX_CONNECTIONS`` at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: closed at once, nothing read
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def make_server(
    app: Flask, *, host: str, port: int, read_seconds: float = REQUEST_READ_SECONDS
) -> LimitedServer:
    """The example's server for ``app`` (``serve_forever()``; ``shutdown()`` stops it)."""
    handler = type("Handler", (DeadlineHandler,), {"timeout": read_seconds})
    return LimitedServer(host, port, app, handler=handler)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv, default_port=8001, default_data_dir=".bitloot-data-flask")
    shop = prepare_shop(args)
    server = make_server(create_app(shop), host=args.host, port=args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        shop.close()


if __name__ == "__main__":
    main()

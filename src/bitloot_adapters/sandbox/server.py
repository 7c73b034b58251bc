"""A loopback HTTP server for the sandbox stand-ins, built on the standard library.

``SandboxServer(app)`` serves one sandbox (anything with ``handle(SandboxRequest) ->
SandboxResponse``) on ``127.0.0.1`` and a free port, in a background thread::

    with SandboxServer(sandbox) as server:
        client = NowPaymentsClient(http, api_key=..., base_url=f"{server.url}/v1")

Each request runs in its own thread and every connection closes after one response
(HTTP/1.0), so ``close()`` can join every thread and no socket outlives the server. A
response may ask the server to stall before answering (a slow or hung provider); closing
the server cuts any stall short.

This module must never be used to serve anything but loopback test traffic.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "Route",
    "SandboxApp",
    "SandboxRequest",
    "SandboxResponse",
    "SandboxServer",
    "dispatch",
]

_MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxRequest:
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    # Header names lowercased.
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxResponse:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    # Seconds the server waits before answering: longer than a client's timeout, the
    # client sees a timeout whether or not the request was processed.
    stall: float = 0.0


class SandboxApp(Protocol):
    def handle(self, request: SandboxRequest) -> SandboxResponse: ...


@dataclass(frozen=True, slots=True)
class Route:
    """``method`` and a full-match ``pattern`` on the path; named groups become arguments."""

    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., SandboxResponse]


def dispatch(
    request: SandboxRequest, routes: Sequence[Route], not_found: SandboxResponse
) -> SandboxResponse:
    """Call the first route matching ``request``; ``not_found`` when none does."""
    for route in routes:
        match = route.pattern.fullmatch(request.path)
        if match is not None and route.method == request.method:
            return route.handler(request, **match.groupdict())
    return not_found


class _HttpServer(ThreadingHTTPServer):
    # Non-daemon handler threads, joined by server_close(): nothing outlives close().
    daemon_threads = False
    block_on_close = True
    # socketserver's default backlog of 5 resets connections under a burst of clients.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: SandboxApp, errors: list[Exception]) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self.stopping = threading.Event()
        self.errors = errors

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) closes its socket before the answer;
        # that is the point of a stall, not an error worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "bitloot-sandbox"
    sys_version = ""

    def _serve(self) -> None:
        server = self.server
        if not isinstance(server, _HttpServer):  # pragma: no cover - wired by SandboxServer
            raise TypeError("the sandbox handler needs a SandboxServer")
        split = urlsplit(self.path)
        declared = self.headers.get("Content-Length") or "0"
        length = int(declared) if declared.isascii() and declared.isdigit() else -1
        if length < 0 or length > _MAX_BODY_BYTES or self.headers.get("Transfer-Encoding"):
            self._answer(SandboxResponse(status=411, body=b'{"message":"Length Required"}'))
            return
        request = SandboxRequest(
            method=self.command,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        try:
            response = server.app.handle(request)
        except Exception as exc:  # noqa: BLE001  a sandbox bug answers 500 and is kept
            server.errors.append(exc)
            response = SandboxResponse(status=500, body=b'{"message":"sandbox error"}')
        if response.stall > 0 and server.stopping.wait(response.stall):
            return  # closing: drop the connection unanswered
        self._answer(response)

    def _answer(self, response: SandboxResponse) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = _serve  # noqa: N815  http.server's naming
    do_POST = _serve  # noqa: N815
    do_PUT = _serve  # noqa: N815
    do_PATCH = _serve  # noqa: N815
    do_DELETE = _serve  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  stdlib signature
        """Quiet: the sandboxes record their own calls."""


class SandboxServer:
    """Serves ``app`` on ``host`` (loopback) and ``port`` (0: any free one) in a thread."""

    def __init__(self, app: SandboxApp, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self._address = (host, port)
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._errors: list[Exception] = []

    @property
    def app(self) -> SandboxApp:
        return self._app

    @property
    def errors(self) -> list[Exception]:
        """Exceptions the app raised while handling a request (each answered 500)."""
        return list(self._errors)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, without a trailing slash."""
        if self._server is None:
            raise RuntimeError("the sandbox server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the sandbox server is already running")
        server = _HttpServer(self._address, self._app, self._errors)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"sandbox-{type(self._app).__name__}",
        )
        self._server, self._thread = server, thread
        thread.start()
        return self

    def close(self) -> None:
        """Stop serving, cut stalls short, join every thread and close every socket."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.stopping.set()
        server.shutdown()
        thread.join()
        server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

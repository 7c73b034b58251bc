"""The bitloot example shop on FastAPI + uvicorn.

    python examples/fastapi_server.py --host 127.0.0.1 --port 8000 --data-dir ./.bitloot-data

Thin on purpose: each route hands the raw request to ``bitloot_adapters.http_api`` and
writes its answer back, so this server and the Flask one speak the same contract.
The OpenAPI document is at /openapi.json (as on every server), shown at /docs.

What is left to the server: bodies are read only up to ``MAX_BODY_BYTES`` (a larger
``Content-Length`` is refused unread, a chunked upload is cut off at the limit), and
requests run on thread pools sized by what they wait for (see ``create_app``). An event
stream holds no thread between its polls: it waits on the event loop. ``server_config``
bounds what slow clients can hold (``serve.REQUEST_READ_SECONDS``, ``KEEP_ALIVE_SECONDS``,
``MAX_CONNECTIONS``): uvicorn has no deadline of its own on reading a request, so
``ReadDeadline`` adds one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from http import HTTPStatus

import anyio
import anyio.to_thread
import h11
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from bitloot_adapters.bootstrap import Shop
from bitloot_adapters.http_api import (
    MAX_BODY_BYTES,
    ROUTES,
    HttpRequest,
    HttpResponse,
    Route,
    ShopApi,
    error_response,
)
from bitloot_adapters.serve import (
    KEEP_ALIVE_SECONDS,
    MAX_CONNECTIONS,
    REQUEST_READ_SECONDS,
    hide_url_tokens,
    parse_args,
    prepare_shop,
)

WRITER_THREADS = 4
WEBHOOK_THREADS = 4
WEBHOOK_PATH = "/webhooks/{provider}"
DOCS_ASSETS = "/docs-assets"


async def _paced(stream: Iterator[bytes], interval: float) -> AsyncIterator[bytes]:
    """The stream's chunks, ``interval`` seconds apart: each ``next()`` (it reads the
    store) runs in a thread, the wait between them on the event loop."""
    try:
        while (chunk := await anyio.to_thread.run_sync(next, stream, None)) is not None:
            yield chunk
            await anyio.sleep(interval)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


async def _read_body(request: Request) -> tuple[bytes, bool]:
    """The body, and whether it is over ``MAX_BODY_BYTES`` (then it is not read in full)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return b"", True  # refused unread
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"", True  # a chunked upload is cut off at the limit
        chunks.append(chunk)
    return b"".join(chunks), False


def _to_response(answer: HttpResponse) -> Response:
    if answer.stream is not None:
        return StreamingResponse(
            _paced(answer.stream, answer.stream_interval),
            status_code=answer.status,
            media_type=answer.content_type,
            headers=dict(answer.headers),
        )
    return Response(
        answer.body,
        status_code=answer.status,
        media_type=answer.content_type,
        headers=dict(answer.headers),
    )


def create_app(shop: Shop, *, routes: Sequence[Route] = ROUTES) -> FastAPI:
    api = ShopApi(shop, routes=routes)
    hide_url_tokens()
    # No slash redirects: a path the contract does not name is a 404, as on every server.
    app = FastAPI(
        title="bitloot",
        summary="Crypto checkout for digital game keys",
        redirect_slashes=False,
        # /openapi.json is the API's own route, served like every other; /docs shows it.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    # Writes take turns on the store anyway: a few threads keep it busy, and more would
    # only queue inside it. IPNs get threads of their own, so they never wait behind a
    # write that waits on a provider (opening a payment can take 10 s; NOWPayments wants
    # its answer within 3). Reads, event-stream polls and the sandbox controls (which
    # post IPNs back to this server and wait for the answers) use anyio's larger
    # default pool.
    writers = anyio.CapacityLimiter(WRITER_THREADS)
    webhooks = anyio.CapacityLimiter(WEBHOOK_THREADS)

    def limiter_for(route: Route) -> anyio.CapacityLimiter | None:
        if route.name == WEBHOOK_PATH:
            return webhooks
        if route.method == "GET" or route.name.startswith("/sandbox/"):
            return None
        return writers

    async def handle(request: Request, limiter: anyio.CapacityLimiter | None) -> Response:
        body, too_large = await _read_body(request)
        http_request = HttpRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            body_too_large=too_large,
            client=request.client.host if request.client else "",
        )
        # A refusal that costs no I/O is answered here, so it never takes (or waits for)
        # a thread: a webhook flood cannot queue genuine IPNs behind it.
        answer = api.refuse_early(http_request) or await anyio.to_thread.run_sync(
            api.handle, http_request, limiter=limiter
        )
        response = _to_response(answer)
        if too_large:
            # The rest of the body may still be on its way: do not read it as the next
            # request on this connection.
            response.headers["connection"] = "close"
        return response

    def endpoint_for(route: Route) -> Callable[[Request], Awaitable[Response]]:
        limiter = limiter_for(route)

        async def endpoint(request: Request) -> Response:
            return await handle(request, limiter)

        return endpoint

    for route in api.routes:
        app.add_api_route(
            route.name, endpoint_for(route), methods=[route.method], name=route.handler.__name__
        )
    _add_docs(app)

    @app.exception_handler(HTTPException)
    async def not_found(request: Request, exc: HTTPException) -> Response:
        return _to_response(_refusal(api, request.url.path, exc))

    return app


def _add_docs(app: FastAPI) -> None:
    """/docs: Swagger UI on the API's own /openapi.json (a route like any other), its
    script and style served from /docs-assets (the swagger-ui-bundle package), not a CDN:
    the page works offline. An install without that package (an older ``server`` extra)
    falls back to FastAPI's CDN links."""
    try:
        from swagger_ui_bundle import swagger_ui_path  # noqa: PLC0415 - optional files
    except ImportError:
        assets = {}
    else:
        app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")
        assets = {
            "swagger_js_url": f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            "swagger_css_url": f"{DOCS_ASSETS}/swagger-ui.css",
            "swagger_favicon_url": f"{DOCS_ASSETS}/favicon-32x32.png",
        }

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="bitloot API", **assets)


def _refusal(api: ShopApi, path: str, exc: HTTPException) -> HttpResponse:
    status = exc.status_code
    if status == HTTPStatus.METHOD_NOT_ALLOWED and not api.known_path(path):
        status = HTTPStatus.NOT_FOUND  # e.g. the webhook path of a provider not run here
    code = "method_not_allowed" if status == HTTPStatus.METHOD_NOT_ALLOWED else "not_found"
    detail = str(exc.detail).lower() if status == exc.status_code else "not found"
    return error_response(status, code, detail)


class ReadDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on reading each request.

    The headers and body must arrive within ``read_seconds`` of the connection opening, or
    of the request's first byte on a kept-alive connection; otherwise the connection is
    closed. Writing the answer (an event stream, say) has no deadline."""

    read_seconds: float = REQUEST_READ_SECONDS
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first byte of the next request
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()  # the request is in (or the connection is done)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def server_config(
    app: FastAPI, *, host: str, port: int, read_seconds: float = REQUEST_READ_SECONDS
) -> uvicorn.Config:
    """How the example serves ``app``: deadlines and a connection limit for slow clients."""
    protocol = type("ReadDeadline", (ReadDeadline,), {"read_seconds": read_seconds})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        http=protocol,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # Past it, new requests are answered 503 at once.
        limit_concurrency=MAX_CONNECTIONS,
        # uvicorn would otherwise take X-Forwarded-For from any loopback peer as the
        # client; the shop decides that (BITLOOT_TRUSTED_PROXIES).
        proxy_headers=False,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv, default_port=8000, default_data_dir=".bitloot-data")
    shop = prepare_shop(args)
    try:
        uvicorn.Server(server_config(create_app(shop), host=args.host, port=args.port)).run()
    finally:
        shop.close()


if __name__ == "__main__":
    main()

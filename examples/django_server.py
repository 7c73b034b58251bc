"""The bitloot example shop on Django, served by uvicorn (ASGI; not Django's runserver).

    python examples/django_server.py --host 127.0.0.1 --port 8002 --data-dir ./.bitloot-data-django

Thin on purpose, like the FastAPI and Flask servers: one Django view takes every path and
hands the request to ``bitloot_adapters.http_api.ShopApi``, so all three speak the same
contract. The view is async: the shop's work runs in a worker thread per request, so a
slow request never holds up the others, and an event stream waits between its polls on
the event loop.

What is left to the server: the body is read before Django sees the request, only up to
``MAX_BODY_BYTES`` (a larger ``Content-Length`` is refused unread, a chunked upload is
cut off at the limit); the connection is then closed after the answer.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import django
import uvicorn
from django.conf import settings as django_settings
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest as DjangoRequest
from django.http import HttpResponse as DjangoResponse
from django.http import HttpResponseBase, StreamingHttpResponse
from django.urls import re_path

from bitloot_adapters.bootstrap import Shop
from bitloot_adapters.http_api import HttpRequest, HttpResponse, ShopApi, error_response
from bitloot_adapters.http_api.asgi import AsgiApp, Receive, Scope, Send, read_request
from bitloot_adapters.serve import hide_url_tokens, parse_args, prepare_shop

T = TypeVar("T")
# Where the wrapper leaves the shop and the request it read, for the view.
API_KEY = "bitloot.api"
REQUEST_KEY = "bitloot.request"
# Threads for the shop's work, as many as anyio gives FastAPI: a sandbox payment waits in
# its thread for the IPNs it posts back to this server, which need threads of their own.
THREADS = 40
_threads = ThreadPoolExecutor(THREADS, thread_name_prefix="bitloot-django")


async def _in_thread(call: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_threads, call, *args)


async def _paced(stream: Iterator[bytes], interval: float) -> AsyncIterator[bytes]:
    """The stream's chunks, ``interval`` seconds apart: each ``next()`` (it reads the
    store) in a thread, the wait between them on the event loop."""
    try:
        while (chunk := await _in_thread(next, stream, None)) is not None:
            yield chunk
            await asyncio.sleep(interval)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _to_django(answer: HttpResponse) -> HttpResponseBase:
    response: HttpResponseBase
    if answer.stream is not None:
        response = StreamingHttpResponse(
            _paced(answer.stream, answer.stream_interval),
            status=answer.status,
            content_type=answer.content_type,
        )
    else:
        response = DjangoResponse(
            answer.body, status=answer.status, content_type=answer.content_type
        )
        response["content-length"] = str(len(answer.body))
    for name, value in answer.headers.items():
        response[name] = value
    return response


async def shop_view(request: DjangoRequest) -> HttpResponseBase:
    """Every path, every method: the shop's API answers."""
    scope: Scope = request.scope  # type: ignore[attr-defined]
    api: ShopApi = scope[API_KEY]
    shop_request: HttpRequest = scope[REQUEST_KEY]
    try:
        answer = await _in_thread(api.handle, shop_request)
    except Exception:  # noqa: BLE001 - handle never raises; a server fault still gets JSON
        answer = error_response(500, "internal_error", "internal server error")
    response = _to_django(answer)
    if shop_request.body_too_large:
        # The rest of the body may still be on its way: not the next request.
        response["connection"] = "close"
    return response


urlpatterns = [re_path(r"", shop_view)]


def configure_django() -> None:
    """Django's settings, in code: no database, no middleware, one URL pattern."""
    if django_settings.configured:
        return
    django_settings.configure(
        DEBUG=False,
        # The shop checks what it needs itself; the public URL is the shop's setting.
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        SECRET_KEY=secrets.token_urlsafe(32),  # nothing here signs with it
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        APPEND_SLASH=False,
        USE_TZ=True,
        # The body is read (and limited) before Django sees the request.
        DATA_UPLOAD_MAX_MEMORY_SIZE=None,
        LOGGING_CONFIG=None,
    )
    django.setup(set_prefix=False)


def create_app(shop: Shop) -> AsgiApp:
    """The Django application serving ``shop``, as an ASGI app for uvicorn."""
    configure_django()
    api = ShopApi(shop)
    hide_url_tokens()
    django_app = ASGIHandler()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets are not part of the API
        request = await read_request(scope, receive)
        replayed = False

        async def replay() -> dict[str, Any]:
            # Django reads the (already read) body once, then listens for a disconnect.
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if request.body_too_large:
                await asyncio.Event().wait()  # the rest of the body is never read
            return dict(await receive())

        # Django sees a request whose body it has nothing left to read.
        headers = [
            (name, value)
            for name, value in scope.get("headers", [])
            if name.lower() not in {b"content-length", b"transfer-encoding"}
        ]
        scope = {**scope, "headers": headers, API_KEY: api, REQUEST_KEY: request}
        await django_app(scope, replay, send)

    return app


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv, default_port=8002, default_data_dir=".bitloot-data-django")
    shop = prepare_shop(args)
    try:
        uvicorn.run(create_app(shop), host=args.host, port=args.port, log_level="warning")
    finally:
        shop.close()


if __name__ == "__main__":
    main()

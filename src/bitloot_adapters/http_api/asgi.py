"""The whole HTTP API as a standard ASGI application (``ShopApi.asgi_app()``).

Mount it in any ASGI server (uvicorn, hypercorn) or under another ASGI app. A body is
read only up to ``MAX_BODY_BYTES``: a larger ``Content-Length`` is refused unread, a
chunked upload is cut off at the limit. ``ShopApi.handle`` is synchronous, so each
request runs in a worker thread (``asyncio.to_thread``); an event stream holds no thread
between its polls: it waits on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from bitloot_adapters.http_api.shapes import MAX_BODY_BYTES, HttpRequest, error_response

if TYPE_CHECKING:
    from bitloot_adapters.http_api.api import ShopApi

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _read_body(scope: Scope, receive: Receive) -> tuple[bytes, bool]:
    """The body, and whether it is over the limit (then it is not read in full)."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length" and value.isdigit():
            if int(value) > MAX_BODY_BYTES:
                return b"", True  # refused unread
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"", True  # a chunked upload is cut off at the limit
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _query(raw: bytes) -> dict[str, str]:
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        query.setdefault(name, value)
    return query


def _next(stream: Iterator[bytes]) -> bytes | None:
    return next(stream, None)


async def read_request(scope: Scope, receive: Receive) -> HttpRequest:
    """The ``HttpRequest`` of an ASGI ``http`` scope, its body read up to the limit (for
    a host framework that reads the request itself, such as Django's ASGI handler)."""
    body, too_large = await _read_body(scope, receive)
    return HttpRequest(
        method=str(scope["method"]).upper(),
        path=str(scope.get("path") or "/"),
        query=_query(scope.get("query_string", b"")),
        headers={
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", [])
        },
        body=body,
        body_too_large=too_large,
        client=str((scope.get("client") or ("",))[0]),
    )


def make_asgi_app(api: ShopApi) -> AsgiApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets are not part of the API
        request = await read_request(scope, receive)
        too_large = request.body_too_large
        try:
            answer = await asyncio.to_thread(api.handle, request)
        except Exception:  # noqa: BLE001 - handle never raises; a server fault still gets JSON
            answer = error_response(500, "internal_error", "internal server error")
        headers = [(b"content-type", answer.content_type.encode())]
        headers += [(k.encode(), v.encode()) for k, v in answer.headers.items()]
        if too_large:
            # The rest of the body may still be on its way: not the next request.
            headers.append((b"connection", b"close"))
        if answer.stream is None:
            headers.append((b"content-length", str(len(answer.body)).encode()))
            await send({"type": "http.response.start", "status": answer.status, "headers": headers})
            await send({"type": "http.response.body", "body": answer.body})
            return
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await _stream(answer.stream, answer.stream_interval, receive, send)

    return app


async def _stream(stream: Iterator[bytes], interval: float, receive: Receive, send: Send) -> None:
    """Each chunk (read in a thread), ``interval`` seconds apart on the event loop, until
    the stream ends or the client goes away."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.create_task(watch())
    try:
        while not gone.is_set():
            chunk = await asyncio.to_thread(_next, stream)
            if chunk is None:
                await send({"type": "http.response.body", "body": b""})
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gone.wait(), timeout=interval)
    finally:
        watcher.cancel()
        close = getattr(stream, "close", None)
        if close is not None:
            close()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return

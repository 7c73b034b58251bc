"""The whole HTTP API as a standard WSGI application (``ShopApi.wsgi_app()``).

Mount it in any WSGI server (gunicorn, waitress, wsgiref, werkzeug): every route, key
URLs, webhooks and the event stream. A body is read only up to ``MAX_BODY_BYTES``: a
larger ``Content-Length`` is refused unread, a body without one is cut off at the
limit. A WSGI server gives each request a thread (or process) of its own, so an event
stream waits between its polls in that thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from bitloot_adapters.http_api.shapes import MAX_BODY_BYTES, HttpRequest, paced

if TYPE_CHECKING:
    from bitloot_adapters.http_api.api import ShopApi

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _read_body(environ: dict[str, Any]) -> tuple[bytes, bool]:
    """The body, and whether it is over the limit (then it is not read in full)."""
    stream = environ.get("wsgi.input")
    declared = environ.get("CONTENT_LENGTH") or ""
    if declared.isdigit():
        length = int(declared)
        if length > MAX_BODY_BYTES:
            return b"", True  # refused unread
        return (stream.read(length) if stream is not None and length else b""), False
    if stream is None or not environ.get("wsgi.input_terminated"):
        return b"", False  # no length and no end marker: nothing can be read safely
    body = stream.read(MAX_BODY_BYTES + 1)
    return (b"", True) if len(body) > MAX_BODY_BYTES else (body, False)


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers


def _query(raw: str) -> dict[str, str]:
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True):
        query.setdefault(name, value)  # the first value of a repeated name, as Flask does
    return query


def make_wsgi_app(api: ShopApi) -> WsgiApp:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body, too_large = _read_body(environ)
        # PEP 3333 hands the path over as latin-1 text of the raw bytes.
        path = str(environ.get("PATH_INFO", "")).encode("latin-1").decode("utf-8", "replace")
        answer = api.handle(
            HttpRequest(
                method=str(environ["REQUEST_METHOD"]).upper(),
                path=path or "/",
                query=_query(str(environ.get("QUERY_STRING", ""))),
                headers=_headers(environ),
                body=body,
                body_too_large=too_large,
                client=str(environ.get("REMOTE_ADDR", "")),
                concurrent=bool(
                    environ.get("wsgi.multithread", True) or environ.get("wsgi.multiprocess")
                ),
            )
        )
        headers = [("content-type", answer.content_type), *answer.headers.items()]
        status = f"{answer.status} {HTTPStatus(answer.status).phrase}"
        if answer.stream is not None:
            start_response(status, headers)
            chunks: Iterator[bytes] = paced(answer.stream, answer.stream_interval)
            return chunks
        start_response(status, [*headers, ("content-length", str(len(answer.body)))])
        return [answer.body]

    return app

"""bitloot's HTTP API, independent of any web framework.

A server (FastAPI, Flask, anything) turns its request into an ``HttpRequest``, calls
``ShopApi.handle`` and writes the ``HttpResponse`` back: parsing, validation, errors and
response shapes live here once, so every server speaks the same contract
(``docs/api.md``). Bad input is answered with ``{"error": {"code", "message"}}`` and a
4xx status, never a 500, and changes nothing.

The modules: ``shapes`` (requests, responses, JSON shapes, body parsing), ``customer``,
``webhooks``, ``admin``, ``sandbox`` and ``pages`` (the handlers), ``routes`` (the one
route table), ``openapi`` (the OpenAPI document of that table, served at
``/openapi.json``) and ``api`` (``ShopApi``, which dispatches over it).

What a server must do itself: read at most ``MAX_BODY_BYTES`` of a body (refusing by its
``Content-Length`` before reading, and stopping a chunked upload at the limit) and set
``HttpRequest.body_too_large`` when it stopped; and write a streamed answer one chunk at
a time, waiting ``HttpResponse.stream_interval`` seconds between chunks (``paced`` does
that for a server that gives each request a thread of its own). Nothing here sleeps.
"""

from bitloot_adapters.http_api.api import ShopApi
from bitloot_adapters.http_api.routes import ROUTES, Access, Handler, Route
from bitloot_adapters.http_api.shapes import (
    JSON,
    MAX_BODY_BYTES,
    STATUS_TEXT,
    BodyTooLarge,
    HttpRequest,
    HttpResponse,
    error_response,
    json_response,
    order_json,
    paced,
    payment_json,
)

__all__ = [
    "JSON",
    "MAX_BODY_BYTES",
    "ROUTES",
    "STATUS_TEXT",
    "Access",
    "BodyTooLarge",
    "Handler",
    "HttpRequest",
    "HttpResponse",
    "Route",
    "ShopApi",
    "error_response",
    "json_response",
    "order_json",
    "paced",
    "payment_json",
]

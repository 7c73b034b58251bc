"""``ShopApi``: one request in, one answer out, for any web framework."""

from __future__ import annotations

import functools
import hmac
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import bitloot_core
from bitloot_adapters.http_api.asgi import AsgiApp, make_asgi_app
from bitloot_adapters.http_api.openapi import openapi_document
from bitloot_adapters.http_api.routes import ROUTES, Access, Route
from bitloot_adapters.http_api.shapes import (
    BodyTooLarge,
    HttpRequest,
    HttpResponse,
    body_too_large,
    error_response,
    header_token,
)
from bitloot_adapters.http_api.wsgi import WsgiApp, make_wsgi_app
from bitloot_adapters.rate_limits import ShopLimits, client_address
from bitloot_core.errors import BitlootError, NotFound, RateLimited, Unauthorized

if TYPE_CHECKING:
    from bitloot_adapters.bootstrap import Shop
    from bitloot_adapters.sandbox.controls import SandboxPanel

_log = logging.getLogger("bitloot.http")


def package_version() -> str:
    return bitloot_core.__version__


class ShopApi:
    """Dispatches ``HttpRequest``s to the shop over a route table; one per running shop."""

    def __init__(self, shop: Shop, *, routes: Sequence[Route] = ROUTES) -> None:
        self.shop = shop
        self.checkout = shop.checkout
        self.routes = tuple(routes)
        settings = shop.settings
        self.limits = ShopLimits.per_minute(
            orders=settings.rate_limit_orders_per_minute,
            payments=settings.rate_limit_payments_per_minute,
            webhook_rejects=settings.rate_limit_webhook_rejects_per_minute,
            trusted_proxies=settings.trusted_proxies,
        )

    def client(self, request: HttpRequest) -> str:
        """The address ``request`` comes from (see ``rate_limits.client_address``)."""
        return client_address(request.client, request.headers, self.limits.trusted_proxies)

    def asgi_app(self) -> AsgiApp:
        """The whole API as an ASGI application, for any ASGI server."""
        return make_asgi_app(self)

    def wsgi_app(self) -> WsgiApp:
        """The whole API as a WSGI application, for any WSGI server."""
        return make_wsgi_app(self)

    @functools.cached_property
    def _document(self) -> dict[str, Any]:
        return openapi_document(
            self.routes, providers=self.checkout.provider_names, version=package_version()
        )

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of this API (``GET /openapi.json``)."""
        return self._document

    @property
    def sandbox(self) -> SandboxPanel:
        if self.shop.sandbox is None:
            raise NotFound("the sandbox is off")
        return self.shop.sandbox

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            found = route.pattern.match(path)
            if found and route.method == method:
                return route, found.groupdict()
        return None

    def known_path(self, path: str) -> bool:
        """Whether ``path`` names a resource (another method on it is then a 405)."""
        for route in self.routes:
            found = route.pattern.match(path)
            # /webhooks/{provider} is a resource only for a provider the shop runs.
            if found and found.groupdict().get("provider", "") in (
                "",
                *self.checkout.provider_names,
            ):
                return True
        return False

    def refuse_early(self, request: HttpRequest) -> HttpResponse | None:
        """The answer to a request its route's ``early`` check refuses, else None.

        Cheap and without I/O: an async server runs it on its event loop, so a flood of
        refused requests never queues for the threads real requests run on."""
        matched = self.match(request.method, request.path)
        if matched is None or body_too_large(request):
            return None
        route, params = matched
        if route.early is None:
            return None
        started = time.perf_counter()
        try:
            route.early(self, request, params)
        except RateLimited as exc:
            response = _limited(exc)
        else:
            return None
        self.shop.metrics.request(
            request.method, route.name, response.status, time.perf_counter() - started
        )
        return response

    def handle(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        matched = self.match(request.method, request.path)
        if matched is None:
            known_path = self.known_path(request.path)
            response = (
                error_response(405, "method_not_allowed", "method not allowed")
                if known_path
                else error_response(404, "not_found", "no such resource")
            )
            name = "unmatched"
        else:
            route, params = matched
            name = route.name
            try:
                response = self._call(route, request, params)
            except RateLimited as exc:
                response = _limited(exc)
            except BitlootError as exc:
                response = error_response(exc)
            except Exception:  # noqa: BLE001 - a bug must still get the error shape
                # A bug, not bad input: the traceback goes to the operator's log (route
                # template only, never the request's path or body), the caller gets the
                # contract's error shape.
                _log.exception("unhandled error in %s %s", request.method, name)
                response = error_response(500, "internal_error", "internal server error")
        self.shop.metrics.request(
            request.method, name, response.status, time.perf_counter() - started
        )
        return response

    def _call(self, route: Route, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        if body_too_large(request):
            if route.too_large is not None:
                route.too_large(self, params)
            raise BodyTooLarge
        if route.access is Access.ADMIN:
            self.require_admin(request)
        elif route.access is Access.SANDBOX:
            self.require_sandbox()
        return route.handler(self, request, params)

    # --- access -------------------------------------------------------------------------

    def require_admin(self, request: HttpRequest) -> None:
        # Only from the header: a token in the URL ends up in access and proxy logs.
        token = header_token(request)
        expected = self.shop.settings.admin_token
        if not token or not hmac.compare_digest(token.encode(), expected.encode()):
            raise Unauthorized("the admin token is missing or wrong")

    def require_sandbox(self) -> None:
        if self.shop.sandbox is None:
            raise NotFound("the sandbox is off")


def _limited(exc: RateLimited) -> HttpResponse:
    response = error_response(exc.status_hint, exc.code, exc.message)
    return replace(response, headers={"retry-after": str(exc.retry_after)})

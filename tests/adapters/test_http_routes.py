"""The HTTP API is a few modules over one explicit route table."""

from __future__ import annotations

from bitloot_adapters import http_api
from bitloot_adapters.http_api import (
    ROUTES,
    Access,
    HttpRequest,
    HttpResponse,
    Route,
    ShopApi,
    admin,
    customer,
    openapi,
    pages,
    sandbox,
    webhooks,
)


def test_the_route_table_is_explicit_and_whole() -> None:
    assert isinstance(ROUTES, tuple)
    assert all(isinstance(route, Route) for route in ROUTES)
    keys = [(r.method, r.template) for r in ROUTES]
    assert len(keys) == len(set(keys)), "each (method, template) once"


def test_access_is_a_column_of_the_table() -> None:
    by_access = {access: {r.template for r in ROUTES if r.access is access} for access in Access}
    assert by_access[Access.ADMIN] == {r.template for r in ROUTES if "/admin/" in r.template}
    assert by_access[Access.SANDBOX] == {
        r.template for r in ROUTES if r.template.startswith("/sandbox/")
    }
    assert by_access[Access.ADMIN]
    assert by_access[Access.SANDBOX]


def test_handlers_live_in_their_modules() -> None:
    modules = {r.handler.__module__ for r in ROUTES}
    assert modules == {m.__name__ for m in (customer, webhooks, admin, sandbox, pages, openapi)}
    for route in ROUTES:
        if route.access is Access.ADMIN:
            assert route.handler.__module__ == admin.__name__
        if route.access is Access.SANDBOX:
            assert route.handler.__module__ == sandbox.__name__


def test_the_names_servers_import_are_where_they_were() -> None:
    assert http_api.ShopApi is ShopApi
    assert http_api.HttpRequest is HttpRequest
    assert http_api.HttpResponse is HttpResponse
    assert http_api.MAX_BODY_BYTES == 64 * 1024
    for name in http_api.__all__:
        assert hasattr(http_api, name), name

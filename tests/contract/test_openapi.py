"""The API's OpenAPI 3.1 document: one, built from the route table, served by every
server, and strict enough that an answer outside it is caught."""

from __future__ import annotations

import re

import httpx
import pytest
from openapi_spec_validator import validate

from bitloot_adapters.http_api import ROUTES, ShopApi
from bitloot_adapters.http_api.openapi import OPERATIONS, missing_operations
from support.openapi_check import ContractViolation, ResponseCheck
from support.servers import RunningServer


def test_every_route_has_an_operation_and_every_operation_a_route() -> None:
    assert missing_operations(ROUTES) == []
    assert set(OPERATIONS) == {(r.method, r.template) for r in ROUTES}


def test_both_servers_serve_one_valid_openapi_31_document(shared_server: RunningServer) -> None:
    served = shared_server.http.get("/openapi.json")
    assert served.status_code == 200
    document = served.json()
    validate(document)  # the OpenAPI 3.1 meta-schema
    assert document["openapi"] == "3.1.0"
    assert document == ShopApi(shared_server.shop).openapi()
    assert {(m.upper(), p) for p, ops in document["paths"].items() for m in ops} == {
        (r.method, r.template) for r in ROUTES
    }


def test_the_document_has_bodies_errors_and_auth(shared_server: RunningServer) -> None:
    document = shared_server.http.get("/openapi.json").json()
    create = document["paths"]["/api/orders"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NewOrder"
    }
    created = create["responses"]["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/CreatedOrder"}
    error = {"$ref": "#/components/schemas/Error"}
    assert create["responses"]["400"]["content"]["application/json"]["schema"] == error
    admin = document["paths"]["/api/admin/orders"]["get"]
    assert admin["security"] == [{"adminToken": []}]
    assert admin["responses"]["401"]["content"]["application/json"]["schema"] == error
    provider = document["paths"]["/webhooks/{provider}"]["post"]["parameters"][0]
    providers = list(shared_server.shop.checkout.provider_names)
    assert provider["schema"] == {"type": "string", "enum": providers}


def test_fastapi_docs_show_the_same_document(shared_server: RunningServer) -> None:
    if shared_server.kind != "fastapi":
        pytest.skip("/docs is FastAPI's page")
    # /docs is FastAPI's own page, not part of the API: asked without the check.
    docs = httpx.get(f"{shared_server.url}/docs")
    assert docs.status_code == 200
    assert "/openapi.json" in docs.text
    # Offline: every script and style comes from the server itself, none from a CDN.
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets
    assert all(a.startswith("/docs-assets/") for a in assets), assets
    for asset in assets:
        answer = httpx.get(f"{shared_server.url}{asset}")
        assert answer.status_code == 200, asset
        assert answer.content, asset


def test_the_response_check_catches_an_answer_outside_the_document(
    shared_server: RunningServer,
) -> None:
    check = ResponseCheck(shared_server.http.get("/openapi.json").json())
    url = f"{shared_server.url}/api/products"

    def answer(status: int, **kwargs: object) -> httpx.Response:
        return httpx.Response(status, request=httpx.Request("GET", url), **kwargs)  # type: ignore[arg-type]

    good = [{"id": "p", "name": "P", "price": "1.00", "currency": "usd"}]
    good[0] |= {"source": "custom", "available": True}
    check(answer(200, json=good))
    with pytest.raises(ContractViolation, match="price"):
        check(answer(200, json=[good[0] | {"price": 1.0}]))
    with pytest.raises(ContractViolation, match="Additional properties"):
        check(answer(200, json=[good[0] | {"secret": "x"}]))
    with pytest.raises(ContractViolation, match="content type"):
        check(answer(200, text="hi"))
    with pytest.raises(ContractViolation, match="code"):
        check(answer(400, json={"error": {"message": "no code"}}))
    with pytest.raises(ContractViolation, match="not refused"):
        check(httpx.Response(200, request=httpx.Request("GET", f"{shared_server.url}/nope")))


def test_the_contract_suites_client_checks_every_answer(shared_server: RunningServer) -> None:
    hooks = shared_server.http.event_hooks["response"]
    check = next(h for h in hooks if isinstance(h, ResponseCheck))
    before = check.checked
    shared_server.http.get("/api/products")
    shared_server.http.get("/api/orders/nope")
    assert check.checked == before + 2

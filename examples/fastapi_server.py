"""The bitloot example shop on FastAPI + uvicorn.

    python examples/fastapi_server.py --host 127.0.0.1 --port 8000 --data-dir ./.bitloot-data

Thin on purpose: each route hands the raw request to ``bitloot_adapters.http_api`` and
writes its answer back, so this server and the Flask one speak the same contract.
OpenAPI docs are at /docs.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from pathlib import Path

import anyio
import anyio.to_thread
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool
from starlette.exceptions import HTTPException

from bitloot_adapters.bootstrap import Shop
from bitloot_adapters.http_api import ROUTES, HttpRequest, HttpResponse, ShopApi, error_response
from bitloot_adapters.serve import hide_url_tokens, parse_args, prepare_shop

PAGE_DIR = Path(__file__).parent / "static"
WRITER_THREADS = 4


def _to_response(answer: HttpResponse) -> Response:
    if answer.stream is not None:
        return StreamingResponse(
            iterate_in_threadpool(answer.stream),
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


def create_app(shop: Shop) -> FastAPI:
    api = ShopApi(shop)
    hide_url_tokens()
    # No slash redirects: a path the contract does not name is a 404, as on every server.
    app = FastAPI(
        title="bitloot",
        summary="Crypto checkout for digital game keys",
        redirect_slashes=False,
    )

    # Writes take turns on the store anyway: a few threads keep it busy, and more would
    # only queue inside it. Reads (and event streams) keep anyio's larger default pool.
    writers = anyio.CapacityLimiter(WRITER_THREADS)

    async def endpoint(request: Request) -> Response:
        http_request = HttpRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
        )
        limiter = None if request.method == "GET" else writers
        answer = await anyio.to_thread.run_sync(api.handle, http_request, limiter=limiter)
        return _to_response(answer)

    for route in ROUTES:
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", route.name)
        ]
        app.add_api_route(
            route.name,
            endpoint,
            methods=[route.method],
            name=route.handler.__name__,
            summary=route.handler.__name__.replace("_", " "),
            openapi_extra={"parameters": parameters} if parameters else None,
            include_in_schema=not route.name.startswith("/static"),
        )

    @app.exception_handler(HTTPException)
    async def not_found(request: Request, exc: HTTPException) -> Response:
        del request
        code = (
            "method_not_allowed"
            if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED
            else "not_found"
        )
        return _to_response(error_response(exc.status_code, code, str(exc.detail).lower()))

    return app


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv, default_port=8000, default_data_dir=".bitloot-data")
    shop = prepare_shop(args, page_dir=PAGE_DIR)
    try:
        uvicorn.run(create_app(shop), host=args.host, port=args.port, log_level="warning")
    finally:
        shop.close()


if __name__ == "__main__":
    main()

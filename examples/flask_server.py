"""The bitloot example shop on Flask, served by werkzeug's threaded server.

    python examples/flask_server.py --host 127.0.0.1 --port 8001 --data-dir ./.bitloot-data-flask

Thin on purpose: every request goes to ``bitloot_adapters.http_api`` unchanged, so this
server and the FastAPI one speak the same contract. Flask reads a body only up to the
limit (``MAX_CONTENT_LENGTH``): a larger ``Content-Length`` is refused unread and a
chunked upload is cut off there. Each request has a thread of its own, so an event
stream waits between its polls in its own thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.serving import make_server

from bitloot_adapters.bootstrap import Shop
from bitloot_adapters.http_api import (
    MAX_BODY_BYTES,
    HttpRequest,
    ShopApi,
    error_response,
    paced,
)
from bitloot_adapters.serve import hide_url_tokens, parse_args, prepare_shop

PAGE_DIR = Path(__file__).parent / "static"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
WERKZEUG_CODES: dict[int, str] = {
    HTTPStatus.NOT_FOUND: "not_found",
    HTTPStatus.METHOD_NOT_ALLOWED: "method_not_allowed",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "body_too_large",
    HTTPStatus.INTERNAL_SERVER_ERROR: "internal_error",
}


def create_app(shop: Shop) -> Flask:
    api = ShopApi(shop)
    app = Flask("bitloot", static_folder=None)  # the page files are served by the API
    # Werkzeug refuses a larger Content-Length unread (RequestEntityTooLarge) but cuts a
    # chunked upload off at this length silently: one byte over the limit is enough for
    # ShopApi to tell a body over the limit from one at it.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES + 1
    hide_url_tokens()

    @app.route("/", defaults={"path": ""}, methods=METHODS, provide_automatic_options=False)
    @app.route("/<path:path>", methods=METHODS, provide_automatic_options=False)
    def dispatch(path: str) -> Response:
        del path
        try:
            data, too_large = request.get_data(cache=False), False
        except RequestEntityTooLarge:
            data, too_large = b"", True
        answer = api.handle(
            HttpRequest(
                method=request.method,
                path=request.path,
                query=request.args.to_dict(),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=data,
                body_too_large=too_large,
                client=request.remote_addr or "",
            )
        )
        body: bytes | Iterator[bytes] = answer.body
        if answer.stream is not None:
            body = paced(answer.stream, answer.stream_interval)
        return Response(
            body,
            status=answer.status,
            content_type=answer.content_type,
            headers=dict(answer.headers),
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        # What werkzeug refuses before dispatch (a method no route takes, such as TRACE or
        # OPTIONS) gets the contract's error shape too.
        status = exc.code or HTTPStatus.BAD_REQUEST
        code = WERKZEUG_CODES.get(status, "bad_request")
        answer = error_response(status, code, exc.name.lower())
        return Response(answer.body, status=answer.status, content_type=answer.content_type)

    return app


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv, default_port=8001, default_data_dir=".bitloot-data-flask")
    shop = prepare_shop(args, page_dir=PAGE_DIR)
    server = make_server(args.host, args.port, create_app(shop), threaded=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        shop.close()


if __name__ == "__main__":
    main()

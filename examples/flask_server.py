"""The bitloot example shop on Flask, served by werkzeug's threaded server.

    python examples/flask_server.py --host 127.0.0.1 --port 8001 --data-dir ./.bitloot-data-flask

Thin on purpose: every request goes to ``bitloot_adapters.http_api`` unchanged, so this
server and the FastAPI one speak the same contract.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, request
from werkzeug.serving import make_server

from bitloot_adapters.bootstrap import Shop
from bitloot_adapters.http_api import HttpRequest, ShopApi
from bitloot_adapters.serve import parse_args, prepare_shop

PAGE_DIR = Path(__file__).parent / "static"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def create_app(shop: Shop) -> Flask:
    api = ShopApi(shop)
    app = Flask("bitloot")

    @app.route("/", defaults={"path": ""}, methods=METHODS)
    @app.route("/<path:path>", methods=METHODS)
    def dispatch(path: str) -> Response:
        del path
        answer = api.handle(
            HttpRequest(
                method=request.method,
                path=request.path,
                query=request.args.to_dict(),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=request.get_data(cache=False),
            )
        )
        body = answer.stream if answer.stream is not None else answer.body
        return Response(
            body,
            status=answer.status,
            content_type=answer.content_type,
            headers=dict(answer.headers),
        )

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

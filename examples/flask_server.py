"""The bitloot example shop on Flask, served by werkzeug's threaded server.

    python examples/flask_server.py --host 127.0.0.1 --port 8001 --data-dir ./.bitloot-data-flask

Thin on purpose: every request goes to ``ShopApi.wsgi_app()``, the whole API as a
standard WSGI application, so this server and the FastAPI one speak the same contract.
The WSGI app refuses a larger ``Content-Length`` unread and cuts a chunked upload off at
the limit. Each request has a thread of its own, so an event stream waits between its
polls in its own thread.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from werkzeug.serving import make_server

from bitloot_adapters.bootstrap import Shop
from bitloot_adapters.http_api import ShopApi
from bitloot_adapters.serve import hide_url_tokens, parse_args, prepare_shop

PAGE_DIR = Path(__file__).parent / "static"


def create_app(shop: Shop) -> Flask:
    """A Flask app whose every request is answered by ``ShopApi.wsgi_app()``.

    A shop's own Flask app would keep its routes and mount bitloot the same way (for
    instance under a path prefix with werkzeug's ``DispatcherMiddleware``). The WSGI app
    reads at most ``MAX_BODY_BYTES`` of a body and streams the event stream in the
    request's own thread.
    """
    app = Flask("bitloot", static_folder=None)  # the page files are served by the API
    hide_url_tokens()
    app.wsgi_app = ShopApi(shop).wsgi_app()  # type: ignore[method-assign]
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

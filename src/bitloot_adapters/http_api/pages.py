"""The customer page's and the operator's console's files.

They ship inside the package (``PACKAGED_PAGE``, read through ``importlib.resources`` so
an installed wheel serves them); a shop's ``page_dir`` replaces them, and a shop built
without any page directory answers 404 for every page.
"""

from __future__ import annotations

import functools
import gzip
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePath
from typing import TYPE_CHECKING, Final

from bitloot_adapters.http_api.shapes import HttpRequest, HttpResponse
from bitloot_core.errors import NotFound

if TYPE_CHECKING:
    from bitloot_adapters.http_api.api import ShopApi

PAGE_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# Text compresses; PNG already is.
COMPRESSED_TYPES: Final = frozenset({".html", ".js", ".css", ".svg"})
# The page as the package ships it: index.html (the shop and the order page), admin.html
# (the operator's console) and the scripts and styles both load from /static/.
PACKAGED_PAGE: Final[Traversable] = resources.files("bitloot_adapters.http_api") / "static"
_PAGE_FILE = re.compile(r"^[A-Za-z0-9_-]+\.(html|js|css|svg|png)$")


def _page_file(api: ShopApi, request: HttpRequest, name: str) -> HttpResponse:
    page_dir = api.shop.page_dir
    if page_dir is None or not _PAGE_FILE.match(name) or not (page_dir / name).is_file():
        raise NotFound(f"no page file {name!r}")
    body = (page_dir / name).read_bytes()
    suffix = PurePath(name).suffix
    headers = {"cache-control": "no-cache", "vary": "accept-encoding"}
    if suffix in COMPRESSED_TYPES and _accepts_gzip(request):
        body = _gzipped(body)
        headers["content-encoding"] = "gzip"
    return HttpResponse(status=200, body=body, content_type=PAGE_TYPES[suffix], headers=headers)


def _accepts_gzip(request: HttpRequest) -> bool:
    """Whether ``Accept-Encoding`` allows gzip: named (or ``*``) without ``q=0``."""
    weights: dict[str, bool] = {}
    for part in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = part.strip().lower().partition(";")
        quality = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
        try:
            weights[coding.strip()] = float(quality) > 0
        except ValueError:
            weights[coding.strip()] = False
    return weights.get("gzip", weights.get("*", False))


@functools.lru_cache(maxsize=32)
def _gzipped(body: bytes) -> bytes:
    # mtime=0: the same file compresses to the same bytes (stable ETags, caches).
    return gzip.compress(body, compresslevel=9, mtime=0)


def page(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    return _page_file(api, request, "index.html")


def order_page(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    del params
    return _page_file(api, request, "index.html")


def static(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    return _page_file(api, request, params["name"])


def admin_page(api: ShopApi, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
    """The operator's console: a page like the customer's; its data needs the admin token."""
    del params
    return _page_file(api, request, "admin.html")

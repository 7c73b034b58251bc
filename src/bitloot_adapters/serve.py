"""What both example servers share: flags, settings, building the shop, the start banner.

The admin token is printed only by the start that generated it, the first in its data dir
(of processes starting together on an empty data dir, only the one that generated it
prints it); a token from the environment is never printed, and no other secret is ever
printed or logged. The web
servers' access logs show request lines, and the customer page passes the order's access
token as ``?token=`` (an ``EventSource`` cannot send headers) and key URLs carry their
signed token in the path, so both servers hide those in their access logs with
``hide_url_tokens``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from typing import Final

from bitloot_adapters.bootstrap import Shop, build_shop
from bitloot_adapters.logs import configure_logging
from bitloot_adapters.settings import ConfigError, load_settings

# What a slow or idle client may hold, on both example servers. A request's headers and
# body must arrive in full within REQUEST_READ_SECONDS of the connection opening (or of
# its first byte after a response), an idle keep-alive connection is closed after
# KEEP_ALIVE_SECONDS, and at most MAX_CONNECTIONS are served at once (well under a
# default `ulimit -n` of 1024: the store, the vault and the HTTP clients need some too).
REQUEST_READ_SECONDS: Final = 10.0
KEEP_ALIVE_SECONDS: Final = 5
MAX_CONNECTIONS: Final = 512

# The loggers that print request lines: werkzeug's (Flask) and uvicorn's access log.
ACCESS_LOGGERS: Final = ("werkzeug", "uvicorn.access")
# An access token in a query string, and a signed key URL (as good as the key until it
# expires).
_TOKENS = re.compile(r"([?&][A-Za-z_]*token=|/keys/)[^&?\s\"]*", re.IGNORECASE)
REDACTED: Final = "[redacted]"


def redact_url_tokens(text: str) -> str:
    """``text`` with every ``token=``-like query value and key-URL token blanked."""
    return _TOKENS.sub(rf"\1{REDACTED}", text)


class UrlTokenFilter(logging.Filter):
    """Blanks ``?token=...`` and ``/keys/...`` in a log record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_url_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url_tokens(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def hide_url_tokens() -> None:
    """Install ``UrlTokenFilter`` on the access loggers (once)."""
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, UrlTokenFilter) for f in logger.filters):
            logger.addFilter(UrlTokenFilter())


def parse_args(
    argv: list[str] | None, *, default_port: int, default_data_dir: str
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="bitloot example server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("BITLOOT_DATA_DIR") or default_data_dir),
        help=f"the shop's data dir (default: $BITLOOT_DATA_DIR or {default_data_dir})",
    )
    parser.add_argument(
        "--no-worker", action="store_true", help="do not run jobs here (run `bitloot worker`)"
    )
    return parser.parse_args(argv)


def prepare_shop(args: argparse.Namespace, *, page_dir: Path | None = None) -> Shop:
    """Settings from the environment and data dir, the shop wired, its worker started
    (serving the packaged page unless ``page_dir`` gives another)."""
    configure_logging()
    try:
        settings = load_settings(data_dir=args.data_dir, host=args.host, port=args.port)
        shop = build_shop(settings, page_dir=page_dir)
    except ConfigError as exc:
        sys.exit(f"bitloot: {exc}")
    if not args.no_worker:
        shop.start_worker()
    mode = "sandbox mode (no real payments)" if settings.sandbox else "live mode"
    lines = [f"bitloot {mode}: {settings.public_url}/", f"data dir: {settings.data_dir}"]
    if settings.admin_token_generated:
        lines.append(f"admin token (generated, kept in the data dir): {settings.admin_token}")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    return shop

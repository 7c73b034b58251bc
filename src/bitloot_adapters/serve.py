"""What both example servers share: flags, settings, building the shop, the start banner.

The admin token is printed only when it was generated in this data dir; a token from the
environment is never printed, and no other secret is ever printed or logged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bitloot_adapters.bootstrap import Shop, build_shop
from bitloot_adapters.logs import configure_logging
from bitloot_adapters.settings import ConfigError, load_settings


def parse_args(
    argv: list[str] | None, *, default_port: int, default_data_dir: str
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="bitloot example server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--data-dir", type=Path, default=Path(default_data_dir))
    parser.add_argument(
        "--no-worker", action="store_true", help="do not run jobs here (run `bitloot worker`)"
    )
    return parser.parse_args(argv)


def prepare_shop(args: argparse.Namespace, *, page_dir: Path) -> Shop:
    """Settings from the environment and data dir, the shop wired, its worker started."""
    configure_logging()
    try:
        settings = load_settings(data_dir=args.data_dir, host=args.host, port=args.port)
    except ConfigError as exc:
        sys.exit(f"bitloot: {exc}")
    shop = build_shop(settings, page_dir=page_dir)
    if not args.no_worker:
        shop.start_worker()
    mode = "sandbox (no real payments)" if settings.sandbox else "live"
    lines = [f"bitloot {mode}: {settings.public_url}/", f"data dir: {settings.data_dir}"]
    if settings.admin_token_generated:
        lines.append(f"admin token (generated, kept in the data dir): {settings.admin_token}")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    return shop

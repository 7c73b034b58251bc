"""The ``bitloot`` command: run the worker, sweep, inspect and retry jobs, list orders.

Commands: ``worker``, ``sweep``, ``jobs``, ``retry ORDER_ID``, ``resend ORDER_ID``,
``orders``, ``migrate``, and ``sandbox`` (the sandbox APIs as a process of their own).

Every command reads the same settings as the example servers (environment variables and
the data dir's secrets), so ``bitloot worker --data-dir D`` works on the shop a server
started with ``--data-dir D`` (``BITLOOT_DATA_DIR`` sets the default). Each command logs
its mode first (a ``bitloot_start`` line on stderr) and refuses a data dir of the other
mode; only ``worker`` may start a new data dir, the others need an existing one. Output
is plain text for people; ``--json`` (before or after the command) for scripts. Lists are
newest first.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Final, TextIO

import httpx
import structlog

from bitloot_adapters.bootstrap import NoMetrics, Shop, build_shop, open_store
from bitloot_adapters.logs import configure_logging
from bitloot_adapters.sandbox.server import SandboxServer
from bitloot_adapters.sandbox.standalone import SandboxConfigError, shared_sandbox
from bitloot_adapters.settings import ConfigError, Settings, load_settings
from bitloot_core.chart import Flag, OrderStatus
from bitloot_core.errors import BitlootError
from bitloot_core.values import Job, JobState, Order

DEFAULT_DATA_DIR: Final = ".bitloot-data"
# The commands that may start a shop in a data dir never used.
_STARTS_A_SHOP: Final = frozenset({"worker", "migrate"})


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bitloot", description="bitloot checkout operations")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(env.get("BITLOOT_DATA_DIR") or DEFAULT_DATA_DIR),
        help=f"the shop's data dir (default: $BITLOOT_DATA_DIR or {DEFAULT_DATA_DIR})",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    # --json after the command too; SUPPRESS keeps the one given before it.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, parents=[after])

    worker = command("worker", "run due jobs, the sweeper and reconciliation")
    worker.add_argument("--once", action="store_true", help="one pass, then exit")
    worker.add_argument("--poll", type=float, default=0.5, help="seconds between passes")
    worker.add_argument("--name", default="worker")
    command("sweep", "expire abandoned orders now")
    command("migrate", "bring the store's schema up to this bitloot's")
    sandbox = command("sandbox", "serve the sandbox APIs on their own, for shops to share")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8100)
    jobs = command("jobs", "list jobs, newest first (dead ones with --state dead)")
    jobs.add_argument("--state", choices=[s.value for s in JobState])
    retry = command("retry", "re-enqueue fulfillment of a failed order")
    retry.add_argument("order_id")
    resend = command("resend", "re-enqueue a completion email that failed")
    resend.add_argument("order_id")
    orders = command("orders", "list orders, newest first, by status or flag")
    orders.add_argument("--status", choices=[s.value for s in OrderStatus])
    orders.add_argument("--flag", choices=[f.value for f in Flag])
    orders.add_argument("--limit", type=int, default=100)
    return parser


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _print_jobs(jobs: Sequence[Job], out: TextIO, *, as_json: bool) -> None:
    if as_json:
        rows = [
            {
                "key": j.key,
                "state": j.state,
                "attempts": j.attempts,
                "run_at": j.run_at.isoformat(),
                "last_error": j.last_error,
            }
            for j in jobs
        ]
        out.write(json.dumps(rows, indent=2) + "\n")
        return
    if not jobs:
        out.write("no jobs\n")
        return
    out.write(f"{'JOB':<44} {'STATE':<8} {'TRIES':>5}  {'RUN AT':<19}  LAST ERROR\n")
    out.writelines(
        f"{j.key:<44} {j.state:<8} {j.attempts:>5}  {_when(j.run_at):<19}  {j.last_error or ''}\n"
        for j in jobs
    )


def _print_orders(orders: Sequence[Order], out: TextIO, *, as_json: bool) -> None:
    if as_json:
        rows = [
            {
                "id": o.id,
                "status": o.status,
                "flags": sorted(o.flags),
                "total": str(o.total),
                "currency": o.currency,
                "created_at": o.created_at.isoformat(),
            }
            for o in orders
        ]
        out.write(json.dumps(rows, indent=2) + "\n")
        return
    if not orders:
        out.write("no orders\n")
        return
    out.write(f"{'ORDER':<18} {'STATUS':<10} {'TOTAL':>12}  {'CREATED':<19}  FLAGS\n")
    for o in orders:
        total = f"{o.total} {o.currency.upper()}"
        flags = ",".join(sorted(o.flags))
        out.write(f"{o.id:<18} {o.status:<10} {total:>12}  {_when(o.created_at):<19}  {flags}\n")


def _run_worker(shop: Shop, args: argparse.Namespace, out: TextIO) -> int:
    if args.once:
        done = shop.worker.run_once()
        out.write(f"ran {len(done.jobs)} jobs, expired {len(done.swept)} orders\n")
        return 0
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    settings = shop.settings
    out.write(
        f"worker {args.name} running in {settings.mode} mode on {settings.data_dir} "
        "(Ctrl-C stops)\n"
    )
    out.flush()
    shop.worker.run_forever(stop, poll_seconds=args.poll)
    return 0


def _migrate(settings: Settings, out: TextIO) -> int:
    """Open the store, which migrates it (once, however many processes do it at once)."""
    try:
        store = open_store(settings)
    except (BitlootError, ConfigError) as exc:
        sys.stderr.write(f"bitloot: {exc}\n")
        return 1
    try:
        applied, version = store.applied, store.schema_version()
    finally:
        store.close()
    if applied:
        out.write(f"applied migrations {', '.join(map(str, applied))}\n")
    out.write(f"schema at version {version}\n")
    return 0


def _run_sandbox(args: argparse.Namespace, out: TextIO) -> int:
    """``bitloot sandbox``: serve until SIGTERM or Ctrl-C; it has no data dir."""
    with httpx.Client(timeout=httpx.Timeout(10.0)) as http:
        try:
            app = shared_sandbox(os.environ, http=http)
        except SandboxConfigError as exc:
            sys.stderr.write(f"bitloot: {exc}\n")
            return 2
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            del signum, frame
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        try:
            with SandboxServer(app, host=args.host, port=args.port) as server:
                url = server.url
                out.write(
                    f"bitloot sandbox mode (no real payments): {url}\n"
                    f"  NOWPayments API: {url}/nowpayments/v1\n"
                    f"  Kinguin API:     {url}/kinguin\n"
                    f"  controls:        {url}/sandbox/...\n"
                    f"  shops use it with BITLOOT_SANDBOX_URL={url}\n"
                )
                out.flush()
                stop.wait()
        finally:
            app.close()
    return 0


def _settings(args: argparse.Namespace, out: TextIO) -> Settings | None:
    """The command's settings, its mode logged and a generated admin token shown; None
    (the reason on stderr) when they are refused."""
    try:
        settings = load_settings(
            data_dir=args.data_dir, must_exist=args.command not in _STARTS_A_SHOP
        )
    except ConfigError as exc:
        sys.stderr.write(f"bitloot: {exc}\n")
        return None
    structlog.get_logger("bitloot.cli").info(
        "bitloot_start", command=args.command, mode=settings.mode, data_dir=str(settings.data_dir)
    )
    if settings.admin_token_generated:
        # This command started the data dir: it alone can show the token it generated.
        out.write(f"admin token (generated, kept in the data dir): {settings.admin_token}\n")
        out.flush()
    return settings


def _command(shop: Shop, args: argparse.Namespace, out: TextIO) -> int:
    checkout = shop.checkout
    if args.command == "worker":
        return _run_worker(shop, args, out)
    if args.command == "sweep":
        expired = checkout.sweep()
        out.write(f"expired {len(expired)} orders\n" + "".join(f"  {i}\n" for i in expired))
    elif args.command == "jobs":
        state = JobState(args.state) if args.state else None
        newest_first = checkout.list_jobs(state=state)[::-1]
        _print_jobs(newest_first, out, as_json=args.json)
    elif args.command == "retry":
        order = checkout.retry_fulfillment(args.order_id, actor="cli")
        out.write(f"order {order.id}: fulfillment re-enqueued ({order.status})\n")
    elif args.command == "resend":
        order = checkout.resend_email(args.order_id, actor="cli")
        out.write(f"order {order.id}: completion email re-enqueued\n")
    else:
        found = checkout.list_orders(
            status=OrderStatus(args.status) if args.status else None,
            flag=Flag(args.flag) if args.flag else None,
            limit=args.limit,
        )
        _print_orders(found, out, as_json=args.json)
    return 0


def run(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run one command; returns the process exit status."""
    out = out or sys.stdout
    args = _parser(os.environ).parse_args(argv)
    configure_logging()
    if args.command == "sandbox":
        return _run_sandbox(args, out)
    settings = _settings(args, out)
    if settings is None:
        return 2
    if args.command == "migrate":
        return _migrate(settings, out)
    # Nothing scrapes a command's counters; and prometheus-client is a server extra.
    shop = build_shop(settings, metrics=NoMetrics())
    try:
        return _command(shop, args, out)
    except BitlootError as exc:
        sys.stderr.write(f"bitloot: {exc.message} ({exc.code})\n")
        return 1
    finally:
        shop.close()


def main() -> None:
    sys.exit(run())

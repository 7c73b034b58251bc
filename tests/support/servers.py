"""Start the example servers in-process on loopback, over real HTTP, for tests.

``running_server("fastapi" | "flask" | "django", data_dir, env)`` builds the shop exactly as the
example scripts do (sandbox mode unless ``env`` says otherwise), serves it on a free
port in a thread, and yields a ``RunningServer`` with the base URL, the shop and an
``httpx.Client`` pointed at it, which checks every answer against the server's OpenAPI
document (``support.openapi_check``).

``postgres_env(url)`` is what a shop on a shared PostgreSQL database is started with
(its URL and the secrets it must then be given); ``RunningServer.rows`` and
``sealed_key`` read what the shop stored, whichever store and vault it runs on.
"""

from __future__ import annotations

import base64
import importlib.util
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from bitloot_adapters.bootstrap import Shop, build_shop
from bitloot_adapters.postgres_store import PostgresStore
from bitloot_adapters.serve import REQUEST_READ_SECONDS
from bitloot_adapters.settings import load_settings
from bitloot_adapters.sqlite_store import SqliteStore
from bitloot_adapters.vault_db import DatabaseVault
from bitloot_adapters.vault_file import FileVault, ref_file_name
from support.openapi_check import ResponseCheck

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PAGE_DIR = ROOT / "src" / "bitloot_adapters" / "http_api" / "static"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (examples is not a package)."""
    module_name = f"bitloot_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningServer:
    kind: str
    url: str
    shop: Shop
    http: httpx.Client

    @property
    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.shop.settings.admin_token}"}

    @property
    def backend(self) -> str:
        return "postgres" if isinstance(self.shop.store, PostgresStore) else "sqlite"

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """``sql`` (a read, in SQL both engines speak) on the shop's own database, past the
        shop; PostgreSQL's booleans come back as SQLite's 0 and 1."""
        store = self.shop.store
        if isinstance(store, SqliteStore):
            uri = f"file:{store.path}?mode=ro"
            with closing(sqlite3.connect(uri, uri=True)) as db:
                db.row_factory = sqlite3.Row
                return [dict(row) for row in db.execute(sql)]
        assert isinstance(store, PostgresStore)
        with psycopg.connect(store.url, row_factory=dict_row) as conn:
            found = conn.execute(sql.encode()).fetchall()
        return [{k: int(v) if isinstance(v, bool) else v for k, v in r.items()} for r in found]

    def sealed_key(self, ref: str) -> bytes | None:
        """The encrypted envelope the shop's vault keeps for ``ref``, read past the vault."""
        vault = self.shop.vault
        if isinstance(vault, FileVault):
            path = vault.path_for(ref)
            return path.read_bytes() if path.exists() else None
        assert isinstance(vault, DatabaseVault)
        name = ref_file_name(ref).removesuffix(".key")
        found = self.rows(f"SELECT envelope FROM vault_keys WHERE name = '{name}'")  # noqa: S608
        return bytes(found[0]["envelope"]) if found else None


def postgres_env(database_url: str) -> dict[str, str]:
    """A shop on a shared PostgreSQL database: its URL and the secrets it must be given."""
    return {
        "BITLOOT_DATABASE_URL": database_url,
        "BITLOOT_NOWPAYMENTS_IPN_SECRET": "ipn-secret-shared-by-every-host",
        "BITLOOT_VAULT_KEY": base64.b64encode(b"v" * 32).decode(),
        "BITLOOT_SIGNING_KEY": base64.b64encode(b"s" * 32).decode(),
        "BITLOOT_ADMIN_TOKEN": "admin-token-shared-by-every-host",
    }


# FastAPI and Flask run as their example scripts configure them (read deadlines,
# connection limits), with the read deadline given.
def _serve_fastapi(shop: Shop, port: int, read_seconds: float) -> tuple[threading.Thread, object]:
    import uvicorn  # noqa: PLC0415

    example = load_example("fastapi_server")
    config = example.server_config(
        example.create_app(shop), host="127.0.0.1", port=port, read_seconds=read_seconds
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return thread, server


def _serve_django(shop: Shop, port: int, read_seconds: float) -> tuple[threading.Thread, object]:
    import uvicorn  # noqa: PLC0415

    del read_seconds  # served with uvicorn's defaults

    app = load_example("django_server").create_app(shop)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return thread, server


def _serve_flask(shop: Shop, port: int, read_seconds: float) -> tuple[threading.Thread, object]:
    example = load_example("flask_server")
    server = example.make_server(
        example.create_app(shop), host="127.0.0.1", port=port, read_seconds=read_seconds
    )
    thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.05), daemon=True)
    thread.start()
    return thread, server


# Each example server, by the name tests give it.
SERVERS = {"fastapi": _serve_fastapi, "flask": _serve_flask, "django": _serve_django}
UVICORN_KINDS = frozenset({"fastapi", "django"})


def _stop(kind: str, thread: threading.Thread, server: object) -> None:
    if kind in UVICORN_KINDS:
        server.should_exit = True  # type: ignore[attr-defined]
    else:
        server.shutdown()  # type: ignore[attr-defined]
        server.server_close()  # type: ignore[attr-defined]
    thread.join(10)


def _wait_ready(http: httpx.Client, url: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            if http.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


@contextmanager
def running_server(
    kind: str,
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    worker: bool = True,
    worker_poll: float = 0.05,
    read_seconds: float = REQUEST_READ_SECONDS,
) -> Iterator[RunningServer]:
    port = free_port()
    # Tests make many orders from one address: limits are off unless a test sets them.
    quiet = {
        f"BITLOOT_RATE_LIMIT_{n}_PER_MINUTE": "0" for n in ("ORDERS", "PAYMENTS", "WEBHOOK_REJECTS")
    }
    settings = load_settings(data_dir=data_dir, port=port, env=quiet | dict(env or {}))
    shop = build_shop(settings)
    if worker:
        shop.start_worker(poll_seconds=worker_poll)
    try:
        thread, server = SERVERS[kind](shop, port, read_seconds)
    except BaseException:
        # A server that cannot start (its framework missing, say) must not leave the
        # shop's worker, sandboxes and database pool running: they keep the test
        # process from exiting.
        shop.close()
        raise
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, timeout=30)
    try:
        _wait_ready(http, url)
        # Every answer the test receives from here on is checked against the document.
        document = http.get("/openapi.json").json()
        http.event_hooks["response"] = [ResponseCheck(document, origin=url)]
        yield RunningServer(kind=kind, url=url, shop=shop, http=http)
    finally:
        http.close()
        _stop(kind, thread, server)
        shop.close()

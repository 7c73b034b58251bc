"""A shop on a shared PostgreSQL database: the store and vault ``BITLOOT_DATABASE_URL``
selects, and ``bitloot migrate`` run by many processes (hosts) at once.

Each test gets a fresh database on the throwaway cluster (``pg_url``); the command runs
as the installed ``bitloot`` console script, in processes of its own.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bitloot_adapters.bootstrap import NoMetrics, build_shop
from bitloot_adapters.postgres_store import SCHEMA_VERSION, PostgresStore
from bitloot_adapters.settings import ConfigError, load_settings
from bitloot_adapters.sqlite_store import SqliteStore
from bitloot_adapters.vault_db import DatabaseVault
from bitloot_adapters.vault_file import FileVault
from bitloot_core.errors import StoreUnavailable
from bitloot_core.testing import MemoryStore

BITLOOT = Path(sys.executable).with_name("bitloot")
SECRETS = {
    "BITLOOT_NOWPAYMENTS_IPN_SECRET": "ipn-secret",
    "BITLOOT_VAULT_KEY": base64.b64encode(b"v" * 32).decode(),
    "BITLOOT_SIGNING_KEY": base64.b64encode(b"s" * 32).decode(),
    "BITLOOT_ADMIN_TOKEN": "admin-token",
}
LIVE = {
    "BITLOOT_MODE": "live",
    "BITLOOT_NOWPAYMENTS_API_KEY": "np-key",
    "BITLOOT_KINGUIN_API_KEY": "kg-key",
    "BITLOOT_PUBLIC_URL": "https://shop.example",
    "BITLOOT_SMTP_URL": "smtp://127.0.0.1:1",
    **SECRETS,
}


def bitloot(data_dir: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
    return subprocess.Popen(  # noqa: S603  our own console script, fixed arguments
        [str(BITLOOT), "--data-dir", str(data_dir), *args],
        env={**clean, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_database_url_selects_the_postgres_store_and_the_database_vault(
    pg_url: str, tmp_path: Path
) -> None:
    settings = load_settings(data_dir=tmp_path, env={**LIVE, "BITLOOT_DATABASE_URL": pg_url})
    shop = build_shop(settings, metrics=NoMetrics())
    try:
        assert isinstance(shop.store, PostgresStore)
        assert shop.store.schema_version() == SCHEMA_VERSION
        assert isinstance(shop.vault, DatabaseVault)
        shop.vault.put("orders/o1/i1/0", b"KEY-1", "text/plain")
        now = shop.clock.now()
        url = shop.vault.url_for("orders/o1/i1/0", now + timedelta(minutes=5), now)
        assert shop.open_key(url.rsplit("/", 1)[1]) == (b"KEY-1", "text/plain")
    finally:
        shop.close()
    # Nothing a host must share was written to its disk.
    assert not (tmp_path / "bitloot.db").exists()
    assert not (tmp_path / "vault").exists()
    with pytest.raises(StoreUnavailable, match="PoolClosed"):
        shop.store.schema_version()


def test_the_sqlite_store_can_keep_keys_in_the_database_vault_too(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, env={**LIVE, "BITLOOT_VAULT": "database"})
    shop = build_shop(settings, metrics=NoMetrics())
    try:
        assert isinstance(shop.store, SqliteStore)
        assert isinstance(shop.vault, DatabaseVault)
        shop.vault.put("ref", b"KEY", "text/plain")
        assert shop.vault.read("ref") == (b"KEY", "text/plain")
    finally:
        shop.close()
    assert not (tmp_path / "vault").exists()


def test_a_shared_database_may_keep_keys_in_files(pg_url: str, tmp_path: Path) -> None:
    env = {**LIVE, "BITLOOT_DATABASE_URL": pg_url, "BITLOOT_VAULT": "file"}
    shop = build_shop(load_settings(data_dir=tmp_path, env=env), metrics=NoMetrics())
    try:
        assert isinstance(shop.vault, FileVault)
    finally:
        shop.close()


def test_the_database_vault_needs_a_store_that_keeps_envelopes(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, env={**LIVE, "BITLOOT_VAULT": "database"})
    with pytest.raises(ConfigError, match="database vault needs"):
        build_shop(settings, store=MemoryStore(), metrics=NoMetrics())


def test_hosts_running_migrate_together_migrate_exactly_once(pg_url: str, tmp_path: Path) -> None:
    env = {**SECRETS, "BITLOOT_DATABASE_URL": pg_url}
    runs = [bitloot(tmp_path / f"host{n}", env, "migrate") for n in range(6)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0] * 6, outputs
    applied = [out for out, _ in outputs if "applied" in out]
    everything = ", ".join(map(str, range(1, SCHEMA_VERSION + 1)))
    assert applied == [f"applied migrations {everything}\nschema at version {SCHEMA_VERSION}\n"]
    assert all(out.endswith(f"schema at version {SCHEMA_VERSION}\n") for out, _ in outputs)
    again = bitloot(tmp_path / "host0", env, "migrate")
    assert again.communicate(timeout=60)[0] == f"schema at version {SCHEMA_VERSION}\n"


def test_migrate_on_sqlite_migrates_the_data_dirs_database(tmp_path: Path) -> None:
    first = bitloot(tmp_path, {}, "migrate").communicate(timeout=60)[0]
    assert "\napplied migrations 1, " in f"\n{first}"
    assert SqliteStore(tmp_path / "bitloot.db").applied == []


def test_migrate_names_every_missing_secret_and_stops(pg_url: str, tmp_path: Path) -> None:
    run = bitloot(tmp_path, {"BITLOOT_DATABASE_URL": pg_url}, "migrate")
    _, err = run.communicate(timeout=60)
    assert run.returncode == 2
    for name in SECRETS:
        assert name in err
    with PostgresStore(pg_url, pool_size=1) as store:  # the command created nothing
        assert store.applied == list(range(1, SCHEMA_VERSION + 1))


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    url = f"postgresql://shop:db-password@/nothing?host={tmp_path}&connect_timeout=1"
    env = {**SECRETS, "BITLOOT_DATABASE_URL": url}
    run = bitloot(tmp_path / "d", env, "migrate")
    out, err = run.communicate(timeout=60)
    assert run.returncode == 1
    assert "the database is unavailable" in err
    assert "db-password" not in err + out


def test_a_new_host_reads_the_shared_shop_with_an_empty_data_dir(
    pg_url: str, tmp_path: Path
) -> None:
    env = {**SECRETS, "BITLOOT_DATABASE_URL": pg_url}
    run = bitloot(tmp_path / "new-host", env, "orders")
    out, err = run.communicate(timeout=60)
    assert (run.returncode, out) == (0, "no orders\n"), err

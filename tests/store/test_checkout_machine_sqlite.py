"""The Checkout state machine (tests/core/checkout_machine.py) over a real SQLite file."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parents[1] / "core"))

from checkout_machine import CI, make_machine

from bitloot_adapters.sqlite_store import SqliteStore

_OPENED: list[tuple[SqliteStore, Path]] = []


def _fresh_sqlite() -> SqliteStore:
    """A new database file per example (each starts from an empty shop)."""
    directory = Path(tempfile.mkdtemp(prefix="bitloot-machine-"))
    store = SqliteStore(directory / "bitloot.db")
    _OPENED.append((store, directory))
    return store


def teardown_module() -> None:
    for store, directory in _OPENED:
        store.close()
        shutil.rmtree(directory, ignore_errors=True)


TestCheckoutOnSqlite = make_machine(
    _fresh_sqlite,
    settings(max_examples=40 if CI else 6, stateful_step_count=25, deadline=None),
).TestCase

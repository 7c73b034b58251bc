"""The composition root: every part of a shop can be given, and what it makes it closes."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bitloot_adapters import bootstrap
from bitloot_adapters.bootstrap import NoMetrics, Shop, build_shop
from bitloot_adapters.clock import OffsetClock, SystemClock
from bitloot_adapters.sandbox import SandboxControls
from bitloot_adapters.settings import Settings, load_settings
from bitloot_adapters.sqlite_store import SqliteStore
from bitloot_core import ports
from bitloot_core.errors import NotFound
from bitloot_core.testing import (
    FakeGateway,
    FakeSupplier,
    MemoryStore,
    MemoryVault,
    RecordingMailer,
    RecordingObserver,
    SequentialIds,
    SettableClock,
)
from bitloot_core.values import Product, ProductSource

LIVE_ENV = {
    "BITLOOT_MODE": "live",
    "BITLOOT_NOWPAYMENTS_API_KEY": "np-key",
    "BITLOOT_NOWPAYMENTS_IPN_SECRET": "ipn-secret",
    "BITLOOT_KINGUIN_API_KEY": "kg-key",
    "BITLOOT_PUBLIC_URL": "https://shop.example",
    "BITLOOT_SMTP_URL": "smtp://127.0.0.1:2525",
}
GIFT = Product(
    id="gift",
    name="Gift card",
    price=Decimal("5.00"),
    currency="usd",
    source=ProductSource.CUSTOM,
)


def _live(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", env=LIVE_ENV)


def test_every_part_can_be_given(tmp_path: Path) -> None:
    store, gateway, mailer = MemoryStore(), FakeGateway(), RecordingMailer()
    clock, observer = SettableClock(datetime(2026, 5, 1, tzinfo=UTC)), RecordingObserver()
    shop = build_shop(
        _live(tmp_path),
        store=store,
        gateway=gateway,
        supplier=FakeSupplier(),
        vault=MemoryVault(b"k" * 32),
        mailer=mailer,
        clock=clock,
        observer=observer,
        metrics=NoMetrics(),
        new_id=SequentialIds("o"),
    )
    try:
        shop.checkout.save_product(GIFT)
        shop.checkout.add_pool_keys("gift", ["GIFT-1"])
        created = shop.checkout.create_order(email="b@example.com", items=[("gift", 1)])
        shop.checkout.open_payment(created.order.id, created.access_token)
    finally:
        shop.close()
    assert created.order.id.startswith("o")
    assert created.order.created_at == clock.now()
    assert [c["order_id"] for c in gateway.created] == [created.order.id]
    with store.transaction() as tx:
        assert tx.get_order(created.order.id) is not None
    assert "order_created" in observer.names()
    # Nothing was made for the parts that were given: no database file.
    assert not (tmp_path / "data" / "bitloot.db").exists()
    assert shop.store is store
    assert shop.clock is clock
    assert shop.sandbox is None


class ClosableStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_given_parts_are_the_callers_to_close(tmp_path: Path) -> None:
    store = ClosableStore()
    shop = build_shop(_live(tmp_path), store=store, metrics=NoMetrics())
    shop.close()
    assert store.closed == 0


def test_a_shop_made_whole_closes_its_store(tmp_path: Path) -> None:
    shop = build_shop(_live(tmp_path), metrics=NoMetrics())
    assert isinstance(shop.store, SqliteStore)
    assert isinstance(shop.clock, SystemClock)
    with shop.store.transaction() as tx:
        tx.upsert_product(GIFT)
    assert shop.store._local.conn is not None
    shop.close()
    assert shop.store._local.conn is None


def test_a_sandbox_shop_has_controls_on_its_own_clock(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", env={})
    clock = SettableClock(datetime(2026, 5, 1, tzinfo=UTC))
    shop = build_shop(settings, clock=clock, metrics=NoMetrics())
    try:
        assert isinstance(shop.sandbox, SandboxControls)
        assert shop.sandbox.clock is clock
        moved = shop.sandbox.advance_clock(Decimal(3600))
        assert moved["now"] == datetime(2026, 5, 1, 1, tzinfo=UTC)
        assert shop.checkout.list_products(), "the demo catalogue is seeded"
        with pytest.raises(NotFound):
            shop.sandbox.pay("no-such-payment", None)
    finally:
        shop.close()


def test_a_sandbox_shop_refuses_a_clock_it_cannot_move(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", env={})
    with pytest.raises(TypeError, match="AdjustableClock"):
        build_shop(settings, clock=SystemClock(), metrics=NoMetrics())


def test_the_sandbox_default_clock_moves_forward_only() -> None:
    clock = OffsetClock()
    before = clock.now()
    assert clock.advance(timedelta(hours=2)) - before >= timedelta(hours=2)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(timedelta(seconds=-1))


def test_the_shop_is_not_the_sandbox_panel() -> None:
    panel = {"sandbox_pay", "sandbox_send", "advance_clock", "kinguin_outage"}
    assert panel.isdisjoint(dir(Shop))
    assert {"pay", "send", "advance_clock", "kinguin_outage"} <= set(dir(SandboxControls))


def test_parts_are_typed_on_the_ports() -> None:
    hints = typing.get_type_hints(build_shop)
    expected = {
        "store": ports.Store,
        "gateway": ports.PaymentGateway,
        "supplier": ports.KeySupplier,
        "vault": ports.KeyVault,
        "mailer": ports.Mailer,
        "clock": ports.Clock,
        "observer": ports.Observer,
    }
    for name, port in expected.items():
        assert hints[name] == port | None, name


def test_no_live_object_is_a_default_argument() -> None:
    defaults = [
        (name, p.default)
        for name, p in inspect.signature(build_shop).parameters.items()
        if p.default is not inspect.Parameter.empty
    ]
    assert defaults
    assert all(value is None for _, value in defaults), defaults


def test_importing_the_composition_root_does_nothing(tmp_path: Path) -> None:
    probe = (
        "import threading, bitloot_adapters.bootstrap, bitloot_adapters.http_api;"
        "assert threading.active_count() == 1, threading.enumerate()"
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []
    assert bootstrap.__doc__ is not None

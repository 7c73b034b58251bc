"""A worker killed in the middle of a fulfillment: the next one finishes it, buying once.

The sandboxes run in this process on loopback, on the real clock; the worker is the
``bitloot worker`` console script in a process of its own, configured for live mode by
environment variables pointing at them, on the same data dir as this test's shop (built
by ``load_settings`` + ``build_shop`` from the same environment). Kinguin takes a few
seconds to deliver keys, so the first worker is caught after placing the Kinguin order
and killed with SIGKILL. ``BITLOOT_JOB_LEASE_SECONDS`` shortens the job lease, so a
second worker takes the job over within seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from realkit import (
    BUYER,
    CATALOGUE,
    ShopServer,
    live_env,
    sandboxes,
    wait_for,
)

from bitloot_adapters.bootstrap import build_shop
from bitloot_adapters.clock import SystemClock
from bitloot_adapters.settings import load_settings
from bitloot_core.chart import OrderStatus
from bitloot_core.values import JobState

BITLOOT = Path(sys.executable).with_name("bitloot")
KEY_DELAY = 3.0
LEASE_SECONDS = 2


@contextmanager
def worker_process(data_dir: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """``bitloot --data-dir DATA_DIR worker`` with ``env``; stopped (if alive) on exit."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603  our own console script, fixed arguments
            [str(BITLOOT), "--data-dir", str(data_dir), "worker", "--poll", "0.05"],
            env={**clean, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.mark.slow
def test_killed_worker_mid_fulfillment_buys_once(tmp_path: Path) -> None:
    assert BITLOOT.exists(), f"the bitloot console script is not installed at {BITLOOT}"
    data_dir = tmp_path / "data"
    with sandboxes(SystemClock(), key_delay=KEY_DELAY) as sandbox, ShopServer() as server:
        env = live_env(
            sandbox,
            server.url,
            job_lease_seconds=str(LEASE_SECONDS),
            mail_dir=str(data_dir / "mail"),
        )
        shop = build_shop(load_settings(data_dir=data_dir, env=env))
        try:
            assert not shop.settings.sandbox
            checkout = shop.checkout
            server.attach(checkout, shop.store, shop.vault, shop.clock)
            for product in CATALOGUE:
                checkout.save_product(product)

            created = checkout.create_order(email=BUYER, items=[("stardew-valley", 1)])
            order_id = created.order.id
            payment = checkout.open_payment(order_id, created.access_token).payment
            assert {d.answered for d in sandbox.payments.pay(payment.id)} == {200}
            assert checkout.admin_order(order_id).order.status is OrderStatus.PAID
            (job,) = checkout.list_jobs()
            assert (job.key, job.state) == (f"fulfill:{order_id}", JobState.PENDING)

            with worker_process(data_dir, env, tmp_path / "worker-1.log") as first:
                wait_for(
                    lambda: sandbox.placements(order_id),
                    timeout=30,
                    what="the first worker to place the Kinguin order",
                )
                os.kill(first.pid, signal.SIGKILL)
                assert first.wait(timeout=10) == -signal.SIGKILL

            # Killed mid-fulfillment: the order was bought, no key is stored, the job is
            # still leased to the dead worker.
            view = checkout.admin_order(order_id)
            assert view.order.status is OrderStatus.PAID
            assert [len(item.keys) for item in view.order.items] == [0]
            (job,) = view.jobs
            assert (job.state, job.attempts) == (JobState.RUNNING, 1)

            mail_dir = data_dir / "mail"
            with worker_process(data_dir, env, tmp_path / "worker-2.log"):
                wait_for(
                    lambda: mail_dir.exists() and any(mail_dir.glob("*.eml")),
                    timeout=30,
                    what="the second worker to fulfill the order and send the email",
                    poll=0.05,
                )
                wait_for(
                    lambda: all(j.state is JobState.DONE for j in checkout.list_jobs()),
                    timeout=10,
                    what="both jobs to be done",
                )

            view = checkout.admin_order(order_id)
            assert view.order.status is OrderStatus.FULFILLED
            jobs = {j.key: (j.state, j.attempts) for j in view.jobs}
            assert jobs == {
                f"fulfill:{order_id}": (JobState.DONE, 2),
                f"completion_email:{order_id}": (JobState.DONE, 1),
            }
            assert len(sandbox.placements(order_id)) == 1
            posts = [c for c in sandbox.supplier.calls if c.method == "POST"]
            assert [c.order_external_id for c in posts] == [order_id]
            assert len(sandbox.kinguin_orders(order_id)) == 1
            assert len(list(mail_dir.glob("*.eml"))) == 1
            reveal = checkout.reveal(order_id, created.order.items[0].id, created.access_token)
            key, _ = shop.vault.open(reveal.url.rsplit("/", 1)[1], shop.clock.now())
            assert len(key.decode().split("-")) == 3
        finally:
            shop.close()

"""Fixtures for the integration tests: a checkout on real parts, an SMTP server, the CLI.

Every test here runs on a real SQLite file in its tmp dir and speaks real HTTP on
loopback to the NOWPayments and Kinguin sandboxes; ``realkit`` holds the wiring.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
from aiosmtpd.controller import Controller

sys.path.insert(0, str(Path(__file__).resolve().parent))

from realkit import CliResult, RealKit, real_kit, run_cli


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """Whatever a test configures for structlog is undone after it."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[RealKit]:
    with real_kit(tmp_path / "data") as kit:
        yield kit


class SmtpRecorder:
    """An aiosmtpd handler that keeps every message it accepted."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content)
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpRecorder, int]]:
    """A real SMTP server on loopback: ``(recorder, port)``."""
    recorder = SmtpRecorder()
    # The controller checks readiness on its port before reading a port 0 back: pick one.
    controller = Controller(recorder, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield recorder, controller.port
    finally:
        controller.stop()
        if not controller.loop.is_closed():
            controller.loop.close()


Bitloot = Callable[..., CliResult]


@pytest.fixture
def bitloot(monkeypatch: pytest.MonkeyPatch) -> Callable[[RealKit], Bitloot]:
    """``bitloot(kit)`` gives ``run(*args)``: the command on the kit's data dir, live mode
    against the kit's sandboxes (``cli.run`` reads ``os.environ``)."""

    def for_kit(kit: RealKit, **extra: str) -> Bitloot:
        for name in list(os.environ):
            if name.startswith("BITLOOT_"):
                monkeypatch.delenv(name)
        for name, value in kit.env(**extra).items():
            monkeypatch.setenv(name, value)

        def run(*args: str) -> CliResult:
            return run_cli(kit.data_dir, *args)

        return run

    return for_kit

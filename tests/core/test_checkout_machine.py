"""The whole Checkout under stateful fuzzing, with the shipped fakes (see
``checkout_machine``; the SQLite run is tests/store/test_checkout_machine_sqlite.py)."""

from __future__ import annotations

from checkout_machine import make_machine

from bitloot_core.testing import MemoryStore

TestCheckoutWithFakes = make_machine(MemoryStore).TestCase

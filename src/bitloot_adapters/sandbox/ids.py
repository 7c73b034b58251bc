"""Ids that a sandbox started again on the same shop never mints twice.

A sandbox forgets everything when its process ends, but the shop's data dir remembers
the payments and Kinguin orders it made: a restarted sandbox numbering its payments from
the same first id would hand the shop a payment id it already has (and the shop refuses
to open the payment). Payment ids start from the wall clock in milliseconds, so a later
start begins above every id an earlier one minted (unless that one made more than a
thousand payments a second); everything else random comes from a fresh seed.
"""

from __future__ import annotations

import secrets
import time

__all__ = ["first_payment_id", "fresh_seed"]


def first_payment_id() -> int:
    """The first payment id of a sandbox starting now (13 digits, exact in JavaScript)."""
    return time.time_ns() // 1_000_000


def fresh_seed() -> int:
    """A seed for the ids, keys and addresses a sandbox makes up."""
    return secrets.randbits(64)

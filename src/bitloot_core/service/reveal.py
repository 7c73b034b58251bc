"""Revealing keys: signed, time-limited URLs for a delivered item's keys, each recorded."""

from __future__ import annotations

from bitloot_core import tokens
from bitloot_core.errors import InvalidState, KeyUrlRejected, NotFound
from bitloot_core.service.context import Context
from bitloot_core.service.ordering import authorised_order
from bitloot_core.service.results import RevealedKey
from bitloot_core.values import Reveal


def reveal(ctx: Context, order_id: str, item_id: str, access_token: str | None) -> RevealedKey:
    """A fresh signed URL for each key of a delivered item; every call is recorded."""
    now = ctx.clock.now()
    with ctx.store.transaction() as tx:
        order = authorised_order(tx, order_id, access_token)
        item = order.item(item_id)
        if item is None:
            raise NotFound(f"no item {item_id!r} in this order")
        if not item.delivered:
            raise InvalidState("this item has not been delivered yet", code="not_delivered")
        # Whole seconds: the signed URL carries its expiry in seconds.
        expires_at = (now + ctx.config.key_url_ttl).replace(microsecond=0)
        urls = tuple(
            ctx.vault.url_for(k.ref, expires_at, now, nonce=ctx.new_id()) for k in item.keys
        )
        tx.record_reveal(Reveal(order_id=order_id, item_id=item_id, at=now, expires_at=expires_at))
        ctx.audit(tx, order_id, "key_revealed", f"item {item_id}")
    return RevealedKey(url=urls[0], urls=urls, expires_at=expires_at)


def check_key_token(ctx: Context, token: str) -> str:
    """The vault ref a key-URL token grants, or ``KeyUrlRejected``."""
    check = tokens.verify_key_token(secret=ctx.config.signing_key, token=token, now=ctx.clock.now())
    if check.problem is not None or check.ref is None:
        raise KeyUrlRejected(str(check.problem or tokens.TokenProblem.INVALID))
    return check.ref

"""Ordering: a customer's order from creation to an opened payment.

Validates the customer's input, replays a repeated ``Idempotency-Key``, and opens the
order's one payment with the provider the customer chose.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Final

from bitloot_core import chart, idempotency, tokens
from bitloot_core.chart import OrderEvent, OrderStatus, PaymentStatus
from bitloot_core.errors import (
    ConcurrentUpdate,
    IdempotencyConflict,
    InvalidInput,
    InvalidState,
    NotFound,
    PaymentOpening,
    SoldOut,
)
from bitloot_core.ports import StoreTx
from bitloot_core.service import stock
from bitloot_core.service.context import Context, order_of, payment_of
from bitloot_core.service.results import CreatedOrder, OpenedPaymentResult, OrderView
from bitloot_core.values import IdempotencyRecord, Order, OrderItem, Payment

MAX_ITEMS: Final = 10
# Kinguin sells at most 9 of one offer per request and 90 units in an order: a larger
# line is bought in several requests, and an order holds at most 90 units in all.
MAX_UNITS: Final = 90
MAX_EMAIL_LENGTH: Final = 254
MAX_PRODUCT_ID_LENGTH: Final = 100
# Exactly one plain address: a dot-atom local part (no quotes, comments, commas, angle
# brackets or other characters mail headers give meaning to) at a host name of letters,
# digits and inner hyphens, ending in a letters-only top-level domain.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# Attempts at opening an order's payment with the provider before it must start over.
MAX_PAYMENT_OPENINGS: Final = 20
_OPENING = "payment-opening"
_EMAIL = re.compile(rf"^(?={_ATOM}(?:\.{_ATOM})*@)[^@]{{1,64}}@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}$")


def create_order(
    ctx: Context, *, email: str, items: Sequence[tuple[str, int]], idempotency_key: str | None
) -> CreatedOrder:
    email = _check_email(email)
    lines = _check_lines(items)
    if idempotency_key is not None and not idempotency.valid_key(idempotency_key):
        raise InvalidInput(
            f"Idempotency-Key must be {idempotency.MIN_KEY_LENGTH}-{idempotency.MAX_KEY_LENGTH}"
            " printable characters",
            code="invalid_idempotency_key",
        )
    now = ctx.clock.now()
    scope = idempotency.scope(email, idempotency_key) if idempotency_key is not None else None
    fingerprint = idempotency.fingerprint(
        {"email": email.casefold(), "items": [[p, q] for p, q in lines]}
    )
    with ctx.store.transaction() as tx:
        if scope is not None:
            replay = _idempotent_replay(ctx, tx, scope, fingerprint, now)
            if replay is not None:
                return replay
        order = _new_order(ctx, tx, email, lines, now)
        tx.insert_order(order)
        if scope is not None and not tx.insert_idempotency(
            IdempotencyRecord(
                scope=scope, fingerprint=fingerprint, order_id=order.id, created_at=now
            )
        ):  # pragma: no cover - transactions are serialised; this rolls back if not
            raise ConcurrentUpdate("the Idempotency-Key was taken concurrently")
        ctx.audit(tx, order.id, "order_created", f"{len(order.items)} items, {order.total}")
    ctx.observer.observe("order_created", order_id=order.id)
    return CreatedOrder(order=order, access_token=ctx.access_token(order.id), replayed=False)


def _idempotent_replay(
    ctx: Context, tx: StoreTx, scope: str, fingerprint: str, now: datetime
) -> CreatedOrder | None:
    existing = tx.get_idempotency(scope)
    decision = idempotency.decide(
        existing,
        request_fingerprint=fingerprint,
        now=now,
        retention=ctx.config.idempotency_retention,
    )
    if decision.decision is idempotency.Decision.CONFLICT:
        raise IdempotencyConflict(
            "this Idempotency-Key was used with a different request", order_id=decision.order_id
        )
    if decision.decision is idempotency.Decision.REPLAY and decision.order_id is not None:
        order = order_of(tx, decision.order_id)
        return CreatedOrder(order=order, access_token=ctx.access_token(order.id), replayed=True)
    if existing is not None:
        tx.delete_idempotency_before(now - ctx.config.idempotency_retention)
    return None


def _new_order(
    ctx: Context, tx: StoreTx, email: str, lines: list[tuple[str, int]], now: datetime
) -> Order:
    items = []
    currencies = set()
    for product_id, quantity in lines:
        product = tx.get_product(product_id)
        if product is None:
            raise NotFound(f"no product {product_id!r}", code="unknown_product")
        stock.check(tx, product, quantity)
        currencies.add(product.currency)
        items.append(
            OrderItem(
                id=ctx.new_id(),
                product_id=product.id,
                name=product.name,
                quantity=quantity,
                unit_price=product.price,
                source=product.source,
                supplier_ref=product.supplier_ref,
            )
        )
    if len(currencies) != 1:
        raise InvalidInput("all products in an order must share one currency")
    order_id = ctx.new_id()
    return Order(
        id=order_id,
        email=email,
        currency=currencies.pop(),
        items=tuple(items),
        created_at=now,
        updated_at=now,
        access_token_hash=tokens.hash_access_token(ctx.access_token(order_id)),
    )


def get_order(ctx: Context, order_id: str, access_token: str | None) -> OrderView:
    with ctx.store.transaction() as tx:
        order = authorised_order(tx, order_id, access_token)
        payment = payment_of(tx, order)
    return OrderView(order=order, payment=payment)


def authorised_order(tx: StoreTx, order_id: str, access_token: str | None) -> Order:
    order = tx.get_order(order_id)
    # An unknown order and a wrong token look the same: ids are not enumerable.
    if order is None or not tokens.access_token_matches(access_token, order.access_token_hash):
        raise NotFound(f"no order {order_id!r} for this token")
    return order


def open_payment(
    ctx: Context, order_id: str, access_token: str | None, provider: str | None
) -> OpenedPaymentResult:
    """Open the order's payment with ``provider`` (default: the first configured).

    Asking again returns the payment already opened, whichever provider holds it.
    """
    setup = ctx.providers.get(provider or ctx.default_provider)
    if setup is None:
        raise InvalidInput(f"no payment provider {provider!r}", code="unknown_provider")
    try:
        with ctx.store.transaction() as tx:
            order = authorised_order(tx, order_id, access_token)
            existing = payment_of(tx, order)
            if existing is not None:
                return OpenedPaymentResult(payment=existing, created=False)
            if order.status is not OrderStatus.CREATED:
                raise InvalidState(f"an order in status {order.status} cannot open a payment")
            # Before the provider is asked: no payment for keys the pool does not hold.
            stock.reserve(tx, order)
            claim = _claim_opening(ctx, tx, order.id)
    except SoldOut as exc:
        with ctx.store.transaction() as tx:
            ctx.audit(tx, order_id, "payment_refused", exc.message)
        raise
    name = setup.provider.name
    config = ctx.config
    try:
        opened = setup.gateway.create_payment(
            order_id=order.id,
            price_amount=str(order.total),
            price_currency=order.currency,
            pay_currency=config.pay_currency,
            ipn_callback_url=f"{config.public_url.rstrip('/')}/webhooks/{name}",
            description=f"{config.shop_name} order {order.id}",
        )
    except Exception:
        # No payment was made: the next request may ask at once.
        _release_opening(ctx, claim, order.id)
        raise
    now = ctx.clock.now()
    payment = Payment(
        id=opened.payment_id,
        order_id=order.id,
        status=PaymentStatus.WAITING,
        provider_status=opened.provider_status,
        provider=name,
        price_amount=opened.price_amount,
        price_currency=opened.price_currency.lower(),
        pay_amount=opened.pay_amount,
        pay_currency=opened.pay_currency.lower(),
        pay_address=opened.pay_address,
        valid_until=opened.valid_until,
        created_at=now,
        updated_at=now,
    )
    with ctx.store.transaction() as tx:
        current = order_of(tx, order.id)
        existing = payment_of(tx, current)
        if existing is not None:
            # Another request opened one meanwhile; keep that one, bound to the order.
            return OpenedPaymentResult(payment=existing, created=False)
        transition = chart.apply(current.status, current.flags, OrderEvent.PAYMENT_OPENED)
        if not transition.applied:
            raise InvalidState(f"an order in status {current.status} cannot open a payment")
        tx.insert_payment(payment)
        tx.update_order(
            replace(
                current,
                status=transition.status,
                payment_id=payment.id,
                payment_provider=name,
                updated_at=now,
            )
        )
        ctx.audit(tx, order.id, "payment_opened", f"payment {payment.id}")
    ctx.observer.observe("payment_opened", order_id=order.id, payment_id=payment.id)
    return OpenedPaymentResult(payment=payment, created=True)


def _claim_opening(ctx: Context, tx: StoreTx, order_id: str) -> str:
    """Claim the one right to ask the provider for the order's payment: concurrent
    requests would each make a provider payment, and only one could be bound.

    Claims are rows under a unique scope (``payment-opening:ORDER:N``); a claim whose
    request failed (``:released``) or outlived ``payment_opening_lease`` (the request
    died) makes way for the next one. Raises ``PaymentOpening`` while one is in flight.
    """
    now = ctx.clock.now()
    for n in range(MAX_PAYMENT_OPENINGS):
        scope = f"{_OPENING}:{order_id}:{n}"
        held = tx.get_idempotency(scope)
        if held is None:
            record = IdempotencyRecord(
                scope=scope, fingerprint=_OPENING, order_id=order_id, created_at=now
            )
            if not tx.insert_idempotency(record):  # pragma: no cover - a concurrent PG tx
                break
            return scope
        released = tx.get_idempotency(f"{scope}:released") is not None
        if not released and now - held.created_at < ctx.config.payment_opening_lease:
            break
    else:
        raise InvalidState(
            f"the payment could not be opened in {MAX_PAYMENT_OPENINGS} attempts; start a new order"
        )
    raise PaymentOpening("the order's payment is being opened; ask again in a moment")


def _release_opening(ctx: Context, claim: str, order_id: str) -> None:
    now = ctx.clock.now()
    with ctx.store.transaction() as tx:
        tx.insert_idempotency(
            IdempotencyRecord(
                scope=f"{claim}:released", fingerprint=_OPENING, order_id=order_id, created_at=now
            )
        )


def _check_email(email: object) -> str:
    if not isinstance(email, str):
        raise InvalidInput("email must be a string", code="invalid_email")
    email = email.strip()
    # Printable ASCII only: control characters break mail headers, and non-ASCII
    # addresses need SMTPUTF8, which many mail servers refuse.
    plain = email.isascii() and email.isprintable()
    if not plain or len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        raise InvalidInput("email is not a valid address", code="invalid_email")
    return email


def _check_lines(items: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    if not items:
        raise InvalidInput("an order needs at least one item", code="invalid_items")
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"an order holds at most {MAX_ITEMS} items", code="invalid_items")
    merged: dict[str, int] = {}
    for product_id, quantity in items:
        if not isinstance(product_id, str) or not 0 < len(product_id) <= MAX_PRODUCT_ID_LENGTH:
            raise InvalidInput("product_id must be a non-empty string", code="invalid_items")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise InvalidInput("quantity must be an integer", code="invalid_quantity")
        if quantity < 1:
            raise InvalidInput("quantity must be at least 1", code="invalid_quantity")
        merged[product_id] = merged.get(product_id, 0) + quantity
    if sum(merged.values()) > MAX_UNITS:
        raise InvalidInput(
            f"an order holds at most {MAX_UNITS} units in all", code="too_many_units"
        )
    return list(merged.items())

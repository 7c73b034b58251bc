"""Payment updates: a provider's webhook, or its answer when asked, applied to an order.

Verify, parse, bind, dedupe, decide (the chart, through ``bitloot_core.payments``) and
store, in one transaction with the jobs the decision enqueues. Every webhook is logged,
whatever becomes of it; nothing here raises for a bad one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from bitloot_core.errors import (
    BadSignature,
    BitlootError,
    ConcurrentUpdate,
    InvalidState,
    MalformedWebhook,
)
from bitloot_core.payments import binding_problem, decide_payment
from bitloot_core.ports import StoreTx
from bitloot_core.providers import PaymentUpdate
from bitloot_core.service.context import Context
from bitloot_core.service.outbox import enqueue
from bitloot_core.service.results import IpnResult
from bitloot_core.values import Order, Payment, WebhookLogEntry, WebhookOutcome

_CAS_RETRIES: Final = 5


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def handle_webhook(
    ctx: Context, provider: str, raw_body: bytes, headers: Mapping[str, str]
) -> IpnResult:
    """Verify, parse, bind, dedupe and apply one webhook. Always logged; never raises."""
    now = ctx.clock.now()
    body_hash = sha256(raw_body)
    setup = ctx.providers.get(provider)
    if setup is None:
        reason = f"no payment provider {provider[:40]!r}"
        return _reject(
            ctx,
            now,
            body_hash,
            provider=None,
            signature_valid=False,
            code="unknown_provider",
            reason=reason,
        )
    try:
        notice = setup.provider.read_webhook(raw_body, headers)
    except BadSignature as exc:
        return _reject(
            ctx,
            now,
            body_hash,
            provider=provider,
            signature_valid=False,
            code=exc.code,
            reason=exc.message,
        )
    except MalformedWebhook as exc:
        return _reject(
            ctx,
            now,
            body_hash,
            provider=provider,
            signature_valid=True,
            code=exc.code,
            reason=exc.message,
        )
    if notice.ignore is not None:
        return _ignore(ctx, now, body_hash, provider=provider, reason=notice.ignore)
    update = notice.update
    if update is None:
        # The webhook only says that something happened: ask the provider what.
        try:
            update = setup.gateway.get_payment(notice.payment_id)
        except BitlootError as exc:
            ctx.observer.observe("reread_failed", payment_id=notice.payment_id, error=exc.code)
            reason = f"could not re-read payment {notice.payment_id}: {exc.message}"
            return _reject(
                ctx,
                now,
                body_hash,
                provider=provider,
                signature_valid=True,
                code=exc.code,
                reason=reason,
            )
    source = (
        "ipn" if notice.signed_with is None else f"ipn signed with the {notice.signed_with} secret"
    )
    return apply_update(
        ctx, update, dedupe=notice.dedupe_key, body_hash=body_hash, now=now, source=source
    )


def ask_provider(ctx: Context, payment: Payment, *, source: str) -> IpnResult | None:
    """The provider's current word on a payment, applied like an IPN (None: no answer)."""
    setup = ctx.providers.get(payment.provider)
    try:
        if setup is None:
            raise InvalidState(f"payment provider {payment.provider!r} is not configured")
        update = setup.gateway.get_payment(payment.id)
    except BitlootError as exc:
        ctx.observer.observe(f"{source}_failed", payment_id=payment.id, error=exc.code)
        return None
    # Each answer at its own time: a pass over many payments takes a while.
    now = ctx.clock.now()
    try:
        return apply_update(
            ctx,
            update,
            dedupe=update.dedupe_key,
            body_hash=sha256(update.dedupe_key.encode()),
            now=now,
            source=source,
        )
    except Exception as exc:  # noqa: BLE001 - one bad record must not abort a whole pass
        ctx.observer.observe(f"{source}_failed", payment_id=payment.id, error=type(exc).__name__)
        return None


def webhook_signed(
    ctx: Context, provider: str, raw_body: bytes, headers: Mapping[str, str]
) -> bool:
    """Whether the webhook's signature is ``provider``'s; nothing is written."""
    setup = ctx.providers.get(provider)
    if setup is None:
        return False
    try:
        setup.provider.read_webhook(raw_body, headers)
    except BadSignature:
        return False
    except MalformedWebhook:
        return True  # signed, but unusable: handle_webhook logs and refuses it
    return True


def _ignore(
    ctx: Context, now: datetime, body_hash: str, *, provider: str, reason: str
) -> IpnResult:
    """A genuine webhook about nothing the shop keeps: acknowledged, logged, not applied."""
    with ctx.store.transaction() as tx:
        tx.log_webhook(
            WebhookLogEntry(
                received_at=now,
                body_sha256=body_hash,
                signature_valid=True,
                outcome=WebhookOutcome.IGNORED,
                reason=reason,
                provider=provider,
            )
        )
    ctx.observer.observe("ipn", outcome="ignored", reason="not_a_payment")
    return IpnResult(outcome=WebhookOutcome.IGNORED, reason=reason)


def _reject(
    ctx: Context,
    now: datetime,
    body_hash: str,
    *,
    provider: str | None,
    signature_valid: bool,
    code: str,
    reason: str,
) -> IpnResult:
    with ctx.store.transaction() as tx:
        tx.log_webhook(
            WebhookLogEntry(
                received_at=now,
                body_sha256=body_hash,
                signature_valid=signature_valid,
                outcome=WebhookOutcome.REJECTED,
                reason=reason,
                provider=provider,
            )
        )
    ctx.observer.observe("ipn", outcome="rejected", reason=code)
    return IpnResult(outcome=WebhookOutcome.REJECTED, reason=reason, code=code)


def apply_update(
    ctx: Context,
    update: PaymentUpdate,
    *,
    dedupe: str,
    body_hash: str,
    now: datetime,
    source: str,
) -> IpnResult:
    for _ in range(_CAS_RETRIES):
        try:
            return _apply_once(
                ctx, update, dedupe=dedupe, body_hash=body_hash, now=now, source=source
            )
        except ConcurrentUpdate:
            continue
    raise ConcurrentUpdate("the order kept changing under this IPN")  # pragma: no cover


def _apply_once(
    ctx: Context,
    event: PaymentUpdate,
    *,
    dedupe: str,
    body_hash: str,
    now: datetime,
    source: str,
) -> IpnResult:
    with ctx.store.transaction() as tx:
        order, payment, problem = _bound_order(tx, event)
        if problem is not None or order is None or payment is None:
            # Logged under the order whose payment it names, so its admin view shows it.
            subject = payment.order_id if payment is not None else None
            ctx.audit(tx, subject, "ipn_refused", f"payment {event.payment_id}: {problem}")
            result = IpnResult(
                outcome=WebhookOutcome.REJECTED,
                reason=f"IPN is not bound to an order of ours: {problem}",
                code="unbound_webhook",
                order_id=subject,
            )
        elif not tx.claim_ipn(dedupe, now):
            result = IpnResult(
                outcome=WebhookOutcome.DUPLICATE,
                reason="duplicate IPN: acknowledged, not applied",
                order_id=order.id,
            )
        else:
            result = _decide_and_store(ctx, tx, event, order, payment, now=now)
        tx.log_webhook(
            WebhookLogEntry(
                received_at=now,
                body_sha256=body_hash,
                signature_valid=True,
                outcome=result.outcome,
                reason=f"{source}: {result.reason}",
                payment_id=event.payment_id,
                order_id=result.order_id,
                provider_status=event.provider_status,
                dedupe_key=dedupe,
                provider=event.provider,
            )
        )
    ctx.observer.observe(
        "ipn", outcome=str(result.outcome), reason=result.code, order_id=result.order_id
    )
    return result


def _bound_order(
    tx: StoreTx, event: PaymentUpdate
) -> tuple[Order | None, Payment | None, str | None]:
    """The order and payment this IPN is about, and why it is not bound (None: bound)."""
    payment = tx.get_payment(event.provider, event.payment_id)
    if payment is None and event.parent_payment_id is not None:
        payment = tx.get_payment(event.provider, event.parent_payment_id)
    if payment is None:
        return None, None, f"no {event.provider} payment of ours has this payment_id"
    order = tx.get_order(payment.order_id)
    if order is None:  # pragma: no cover - payments are only stored with their order
        return None, payment, "the payment's order is missing"
    return order, payment, binding_problem(event, order=order, payment=payment)


def _decide_and_store(
    ctx: Context,
    tx: StoreTx,
    event: PaymentUpdate,
    order: Order,
    payment: Payment,
    *,
    now: datetime,
) -> IpnResult:
    decision = decide_payment(
        order,
        payment,
        event,
        tolerance_percent=ctx.config.underpay_tolerance_percent,
        now=now,
    )
    outcome = WebhookOutcome.APPLIED if decision.applied else WebhookOutcome.IGNORED
    if decision.applied:
        tx.update_payment(decision.payment)
        if decision.order is not order:
            tx.update_order(decision.order)
        enqueue(tx, order.id, decision.effects, now)
    ctx.audit(tx, order.id, f"ipn_{outcome}", decision.reason)
    return IpnResult(outcome=outcome, reason=decision.reason, order_id=order.id)

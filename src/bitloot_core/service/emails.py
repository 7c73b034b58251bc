"""The completion email: one per order, rendered here, sent once from the outbox.

One record per (order, kind) with a stable Message-ID, marked sent only after the mail
server accepted the message; the lease is checked again right before sending.
"""

from __future__ import annotations

import html
from typing import Final

from bitloot_core.service.context import CompletionFacts, Context, order_of
from bitloot_core.service.leases import Lease, renew
from bitloot_core.values import EmailRecord, Order, OutgoingEmail

COMPLETION_EMAIL: Final = "completed"


def send_completion_email(ctx: Context, lease: Lease) -> None:
    order_id = lease.job.order_id
    now = ctx.clock.now()
    with ctx.store.transaction() as tx:
        order = order_of(tx, order_id)
        record = tx.get_email(order_id, COMPLETION_EMAIL)
        if record is None:
            record = EmailRecord(
                order_id=order_id,
                kind=COMPLETION_EMAIL,
                message_id=_message_id(ctx, order_id),
                to=order.email,
                created_at=now,
            )
            tx.insert_email(record)
    if record.sent_at is not None:
        return
    renew(ctx, lease)
    ctx.mailer.send(completion_message(ctx, order, record.message_id))
    with ctx.store.transaction() as tx:
        tx.mark_email_sent(order_id, COMPLETION_EMAIL, ctx.clock.now())
        ctx.audit(tx, order_id, "email_sent", f"{COMPLETION_EMAIL} to the customer")
    ctx.observer.observe("email_sent", order_id=order_id, kind=COMPLETION_EMAIL)


def _message_id(ctx: Context, order_id: str) -> str:
    domain = ctx.config.public_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return f"<order-{order_id}-{COMPLETION_EMAIL}@{domain or 'bitloot.invalid'}>"


def order_page_url(ctx: Context, order_id: str) -> str:
    token = ctx.access_token(order_id)
    return f"{ctx.config.public_url.rstrip('/')}/order/{order_id}?token={token}"


def completion_message(ctx: Context, order: Order, message_id: str) -> OutgoingEmail:
    link = order_page_url(ctx, order.id)
    if ctx.config.completion_email is not None:
        facts = CompletionFacts(
            shop_name=ctx.config.shop_name,
            order=order,
            order_url=link,
            item_urls={i.id: f"{link}#item-{i.id}" for i in order.items},
        )
        content = ctx.config.completion_email(facts)
        return OutgoingEmail(
            message_id=message_id,
            to=order.email,
            subject=content.subject,
            text=content.text,
            html=content.html,
        )
    lines = [f"- {i.name} x{i.quantity}: View keys {link}#item-{i.id}" for i in order.items]
    text = "\n".join(
        [
            "Thank you for your order.",
            "",
            f"Order {order.id}, total {order.total} {order.currency.upper()}:",
            *lines,
            "",
            f"View keys: {link}",
        ]
    )
    rows = "".join(
        f"<li>{_html(i.name)} &times;{i.quantity}: "
        f'<a href="{_html(link)}#item-{_html(i.id)}">View keys</a></li>'
        for i in order.items
    )
    body = (
        f"<p>Thank you for your order.</p><p>Order {_html(order.id)}, total "
        f"{order.total} {_html(order.currency.upper())}:</p><ul>{rows}</ul>"
        f'<p><a href="{_html(link)}">View keys</a></p>'
    )
    return OutgoingEmail(
        message_id=message_id,
        to=order.email,
        subject=f"Your {ctx.config.shop_name} keys (order {order.id})",
        text=text,
        html=body,
    )


def _html(text: str) -> str:
    return html.escape(text, quote=True)

"""A shop's own completion email (``CheckoutConfig.completion_email``) replaces the
built-in subject and bodies, and is given the facts it may use."""

from __future__ import annotations

from checkout_kit import make_kit, send_ipn

from bitloot_core.service import CompletionFacts, EmailContent


def test_a_shop_writes_its_own_completion_email() -> None:
    seen: list[CompletionFacts] = []

    def our_email(facts: CompletionFacts) -> EmailContent:
        seen.append(facts)
        names = ", ".join(item.name for item in facts.order.items)
        return EmailContent(
            subject=f"[{facts.shop_name}] {names} is ready",
            text=f"Your keys: {facts.order_url}",
            html=f'<a href="{facts.order_url}">Your keys</a>',
        )

    kit = make_kit(shop_name="Pixel Keys", completion_email=our_email)
    created = kit.checkout.create_order(email="b@example.com", items=[("hades", 1)])
    payment = kit.checkout.open_payment(created.order.id, created.access_token).payment
    send_ipn(kit, payment, "finished")
    assert [run.outcome for run in kit.checkout.run_due_jobs()] == ["done", "done"]

    (sent,) = kit.mailer.sent
    url = kit.checkout.order_page_url(created.order.id)
    assert (sent.to, sent.subject) == ("b@example.com", "[Pixel Keys] Hades is ready")
    assert (sent.text, sent.html) == (f"Your keys: {url}", f'<a href="{url}">Your keys</a>')
    (facts,) = seen
    item = created.order.items[0]
    assert facts.order.id == created.order.id
    assert facts.item_urls == {item.id: f"{url}#item-{item.id}"}


def test_the_built_in_email_names_the_shop() -> None:
    kit = make_kit(shop_name="Pixel Keys")
    created = kit.checkout.create_order(email="b@example.com", items=[("hades", 1)])
    payment = kit.checkout.open_payment(created.order.id, created.access_token).payment
    send_ipn(kit, payment, "finished")
    kit.checkout.run_due_jobs()
    (sent,) = kit.mailer.sent
    assert sent.subject == f"Your Pixel Keys keys (order {created.order.id})"

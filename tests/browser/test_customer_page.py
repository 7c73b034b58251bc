"""The customer page in a real browser: shop, cart, pay, live status, reveal.

Each test clicks through the page the package ships (``bitloot_adapters/http_api/static``)
served by a sandbox shop on loopback and uses the page's sandbox panel to play the
customer's wallet and the passing of time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Request, Route, expect

from support.axe import assert_no_violations
from support.servers import RunningServer

pytestmark = pytest.mark.browser

Screenshot = Callable[[Page, str], Path]
ORDER_URL = re.compile(r"/order/[0-9a-f]+\?token=[^&]+$")


# --- helpers --------------------------------------------------------------------------------


def fill_cart(page: Page, *products: str, email: str = "buyer@example.com") -> None:
    page.goto("/")
    expect(page.get_by_test_id("products").locator("li")).to_have_count(5)
    for product in products:
        page.get_by_test_id(f"add-{product}").click()
    page.get_by_test_id("email").fill(email)


def pay_with_crypto(page: Page) -> str:
    """Click "Pay with crypto", land on the order page; returns the order id."""
    page.get_by_test_id("pay").click()
    page.wait_for_url(ORDER_URL)
    return page.url.split("/order/")[1].split("?")[0]


def token_of(page: Page) -> str:
    return page.url.split("token=")[1]


def order_json(server: RunningServer, order_id: str, token: str) -> dict[str, Any]:
    answer = server.http.get(f"/api/orders/{order_id}", params={"token": token})
    assert answer.status_code == 200
    order: dict[str, Any] = answer.json()
    return order


def expect_status(page: Page, text: str) -> None:
    expect(page.get_by_test_id("status")).to_have_text(text)


def expect_waiting_for_payment(page: Page) -> None:
    expect_status(page, "Waiting for payment…")
    expect(page.get_by_test_id("pay-address")).not_to_be_empty()
    expect(page.get_by_test_id("pay-amount")).to_have_text(re.compile(r"^\d+\.\d+$"))
    expect(page.get_by_test_id("pay-currency")).not_to_be_empty()
    expect(page.get_by_test_id("countdown")).to_have_text(re.compile(r"^\d+:\d\d$"))
    expect(page.get_by_test_id("sandbox")).to_be_visible()
    page.wait_for_function(
        "() => { const img = document.getElementById('qr');"
        " return img.complete && img.naturalWidth > 0; }"
    )


def wait_for_mail(directory: Path) -> list[Path]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        mails = sorted(directory.glob("*.eml")) if directory.is_dir() else []
        if mails:
            return mails
        time.sleep(0.1)
    return []


def admin_orders(server: RunningServer) -> list[dict[str, Any]]:
    answer = server.http.get("/api/admin/orders", headers=server.admin)
    assert answer.status_code == 200
    orders: list[dict[str, Any]] = answer.json()
    return orders


# --- tests ----------------------------------------------------------------------------------


def test_happy_path_from_cart_to_revealed_keys(
    page: Page, server: RunningServer, tmp_path: Path, screenshot: Screenshot
) -> None:
    fill_cart(page, "stardew-valley", "hollow-knight", "gift-card-10")
    sold_out = page.get_by_test_id("product-founders-pack")
    expect(sold_out.get_by_test_id("sold-out")).to_have_text("sold out")
    expect(page.get_by_test_id("add-founders-pack")).to_be_disabled()
    page.get_by_test_id("qty-gift-card-10").select_option("2")
    expect(page.get_by_test_id("cart-total")).to_have_text("46.98 USD")

    order_id = pay_with_crypto(page)
    expect_waiting_for_payment(page)
    expect(page.get_by_test_id("order-total")).to_have_text("46.98 USD")
    assert page.evaluate("localStorage.getItem('bitloot.lastOrder')") == order_id

    page.get_by_test_id("sandbox-pay").click()
    expect_status(page, "Payment confirmed!")
    for product in ("stardew-valley", "hollow-knight", "gift-card-10"):
        expect(page.get_by_test_id(f"reveal-{product}")).to_be_visible()
    expect(page.get_by_test_id("payment")).to_be_hidden()

    page.get_by_test_id("reveal-stardew-valley").click()
    text_key = page.get_by_test_id("key-stardew-valley").get_by_test_id("key-text")
    expect(text_key).to_have_text(re.compile(r"\S{5,}"))

    page.get_by_test_id("reveal-gift-card-10").click()
    gift_keys = page.get_by_test_id("key-gift-card-10").get_by_test_id("key-text")
    expect(gift_keys).to_have_count(2)
    expect(gift_keys.first).to_have_text(re.compile(r"^GIFT-"))
    assert len(set(gift_keys.all_inner_texts())) == 2

    page.get_by_test_id("reveal-hollow-knight").click()
    image = page.get_by_test_id("key-hollow-knight").get_by_test_id("key-image")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth") > 0
    first_link = page.get_by_test_id("key-hollow-knight").get_by_test_id("key-link")
    expect(first_link).to_have_attribute("href", re.compile(r"/keys/"))

    # Each click asks the server for a fresh signed URL and shows the key again.
    with page.expect_request(re.compile(r"/items/[^/]+/reveal")) as again:
        page.get_by_test_id("reveal-hollow-knight").click()
    assert again.value.method == "POST"
    expect(image).to_be_visible()

    mails = wait_for_mail(tmp_path / "data" / "mail")
    assert len(mails) == 1
    assert order_id in mails[0].read_text()
    screenshot(page, "happy-path")


@pytest.mark.parametrize("viewport", ["phone"], indirect=True)
def test_short_payment_shows_underpaid_and_no_keys(
    page: Page, server: RunningServer, screenshot: Screenshot
) -> None:
    fill_cart(page, "counter-strike-source")
    order_id = pay_with_crypto(page)
    expect_waiting_for_payment(page)
    pay_amount = page.get_by_test_id("pay-amount").inner_text()

    page.get_by_test_id("sandbox-pay-short").click()
    expect_status(page, "Underpaid — payment insufficient")
    expect(page.get_by_role("button", name=re.compile("Reveal"))).to_have_count(0)
    expect(page.get_by_test_id("sandbox-pay")).to_be_disabled()

    # 80% of the amount, computed exactly (no floats) at the amount's precision.
    order = order_json(server, order_id, token_of(page))
    assert order["status"] == "underpaid"
    exact = Decimal(pay_amount) * Decimal("0.8")
    expected = exact.quantize(Decimal(pay_amount), rounding=ROUND_DOWN)
    assert Decimal(order["payment"]["actually_paid"]) == expected
    expect(page.get_by_test_id("status-hint")).to_contain_text(str(expected))
    screenshot(page, "underpaid")


def test_double_click_on_pay_creates_one_order(
    page: Page, server: RunningServer, screenshot: Screenshot
) -> None:
    fill_cart(page, "stardew-valley", email="not-an-email")
    page.get_by_test_id("pay").click()
    expect(page.get_by_test_id("message")).to_contain_text("invalid_email")
    assert admin_orders(server) == []
    screenshot(page, "shop-with-error")

    page.get_by_test_id("email").fill("buyer@example.com")
    page.get_by_test_id("pay").dblclick()
    page.wait_for_url(ORDER_URL)
    expect_waiting_for_payment(page)
    orders = admin_orders(server)
    assert len(orders) == 1
    assert orders[0]["email"] == "buyer@example.com"
    screenshot(page, "double-click")


def test_a_retry_after_a_lost_answer_reuses_the_idempotency_key(
    page: Page, server: RunningServer
) -> None:
    keys: list[str | None] = []

    def lose_first_answer(route: Route, request: Request) -> None:
        keys.append(request.headers.get("idempotency-key"))
        if len(keys) == 1:
            route.fetch()  # the server creates the order; the answer never arrives
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/orders", lose_first_answer)
    fill_cart(page, "gift-card-10")
    page.get_by_test_id("pay").click()
    expect(page.get_by_test_id("message")).to_contain_text("Could not reach the shop")
    expect(page.get_by_test_id("pay")).to_be_enabled()

    pay_with_crypto(page)
    expect_waiting_for_payment(page)
    assert len(keys) == 2
    assert keys[0]
    assert keys[0] == keys[1]
    assert len(admin_orders(server)) == 1


@pytest.mark.parametrize("viewport", ["phone"], indirect=True)
def test_unpaid_order_expires_when_the_clock_passes_an_hour(
    page: Page, server: RunningServer, screenshot: Screenshot
) -> None:
    fill_cart(page, "counter-strike-source")
    order_id = pay_with_crypto(page)
    expect_waiting_for_payment(page)

    page.get_by_test_id("sandbox-advance").click()
    expect_status(page, "Order expired")
    expect(page.get_by_test_id("payment")).to_be_hidden()
    expect(page.get_by_test_id("sandbox-pay")).to_be_disabled()

    # A customer coming back without the token in the link lands on the same order.
    page.goto(f"/order/{order_id}")
    expect_status(page, "Order expired")
    expect(page).to_have_url(ORDER_URL)
    # ...and the shop links back to it.
    page.goto("/")
    resume = page.get_by_test_id("resume").get_by_role("link")
    expect(resume).to_have_attribute("href", re.compile(rf"^/order/{order_id}\?token=."))
    page.goto(f"/order/{order_id}")
    screenshot(page, "expired")


def test_without_event_source_the_page_polls(
    page: Page, server: RunningServer, screenshot: Screenshot
) -> None:
    page.add_init_script("window.EventSource = undefined")
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/events" in r.url else None)
    fill_cart(page, "counter-strike-source")
    pay_with_crypto(page)
    expect_waiting_for_payment(page)

    page.get_by_test_id("sandbox-pay").click()
    expect_status(page, "Payment confirmed!")
    expect(page.get_by_test_id("reveal-counter-strike-source")).to_be_visible()
    assert streams == []
    screenshot(page, "polling-fallback")


def test_failed_payment(page: Page, server: RunningServer) -> None:
    fill_cart(page, "stardew-valley")
    pay_with_crypto(page)
    expect_waiting_for_payment(page)
    page.get_by_test_id("sandbox-fail").click()
    expect_status(page, "Payment failed")
    expect(page.get_by_role("button", name=re.compile("Reveal"))).to_have_count(0)


@pytest.mark.parametrize("server", ["flask", "django"], indirect=True)
def test_the_flask_and_django_servers_serve_the_same_page(
    page: Page, server: RunningServer, screenshot: Screenshot
) -> None:
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        answer = server.http.get(f"/static/{name}")
        assert answer.status_code == 200, f"{server.kind} does not serve /static/{name}"
        assert answer.headers["content-type"].startswith(kind)
    fill_cart(page, "counter-strike-source")
    pay_with_crypto(page)
    expect_waiting_for_payment(page)
    page.get_by_test_id("sandbox-pay").click()
    expect_status(page, "Payment confirmed!")
    page.get_by_test_id("reveal-counter-strike-source").click()
    key = page.get_by_test_id("key-counter-strike-source").get_by_test_id("key-text")
    expect(key).to_have_text(re.compile(r"\S{5,}"))
    screenshot(page, server.kind)


def test_an_underpaid_order_resolved_by_the_admin_updates_the_page(
    page: Page, server: RunningServer
) -> None:
    page.clock.install()
    streams_ended: list[str] = []

    def note_stream_end(request: Request) -> None:
        if "/events" in request.url:
            streams_ended.append(request.url)

    page.on("requestfinished", note_stream_end)
    page.on("requestfailed", note_stream_end)
    fill_cart(page, "counter-strike-source")
    order_id = pay_with_crypto(page)
    expect_waiting_for_payment(page)
    page.get_by_test_id("sandbox-pay-short").click()
    expect_status(page, "Underpaid — payment insufficient")
    deadline = time.monotonic() + 10
    while not streams_ended and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert streams_ended, "the event stream did not end on a final status"

    resolved = server.http.post(
        f"/api/admin/orders/{order_id}/resolve",
        json={"action": "fulfill", "note": "the customer sent the rest"},
        headers=server.admin,
    )
    assert resolved.status_code == 200
    # With the stream over, the page asks every 10 s while an admin may still act.
    page.wait_for_timeout(300)
    expect_status(page, "Underpaid — payment insufficient")
    page.clock.fast_forward(10_000)
    expect_status(page, "Payment confirmed!")
    expect(page.get_by_test_id("reveal-counter-strike-source")).to_be_visible()


def test_the_customer_pays_through_the_provider_they_choose(
    page: Page, server: RunningServer
) -> None:
    fill_cart(page, "gift-card-10")
    expect(page.get_by_test_id("provider-choice")).to_be_visible()
    expect(page.get_by_test_id("provider-nowpayments")).to_be_checked()
    # A radio group: the arrow key moves the choice.
    page.get_by_test_id("provider-nowpayments").focus()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_label("BTCPay Server")).to_be_checked()

    order_id = pay_with_crypto(page)
    expect_waiting_for_payment(page)
    assert order_json(server, order_id, token_of(page))["payment"]["provider"] == "btcpay"
    page.get_by_test_id("sandbox-pay").click()
    expect_status(page, "Payment confirmed!")
    expect(page.get_by_test_id("reveal-gift-card-10")).to_be_visible()


def test_with_one_provider_there_is_nothing_to_choose(page: Page, server: RunningServer) -> None:
    def one_provider(route: Route) -> None:
        route.fulfill(json={"providers": [{"id": "nowpayments", "name": "NOWPayments"}]})

    page.route("**/api/payment-providers", one_provider)
    fill_cart(page, "gift-card-10")
    expect(page.get_by_test_id("provider-choice")).to_be_hidden()
    with page.expect_request(re.compile(r"/api/orders/[^/]+/payment$")) as opened:
        order_id = pay_with_crypto(page)
    assert opened.value.post_data is None
    expect_waiting_for_payment(page)
    assert order_json(server, order_id, token_of(page))["payment"]["provider"] == "nowpayments"


def test_paid_keys_on_their_way_differ_from_keys_held_for_the_staff(
    page: Page, server: RunningServer, screenshot: Screenshot
) -> None:
    # Kinguin takes three hours: the keys are on their way, nothing for the customer to do.
    delay = server.http.post("/sandbox/kinguin/key-delay", json={"seconds": 3 * 3600})
    assert delay.status_code == 200, delay.text
    fill_cart(page, "stardew-valley")
    pay_with_crypto(page)
    page.get_by_test_id("sandbox-pay").click()
    expect_status(page, "Payment confirmed!")
    hint = page.get_by_test_id("status-hint")
    expect(hint).to_contain_text("Your keys are on their way")
    assert_no_violations(page, "a paid order whose keys are on their way")
    screenshot(page, "keys-on-their-way")

    # Kinguin is out of stock: the order is held for the staff, and the page says so.
    stock = server.http.post(
        "/sandbox/kinguin/stock", json={"product_id": "5c9b6a0a2539a4e8f1729c11", "qty": 0}
    )
    assert stock.status_code == 200, stock.text
    fill_cart(page, "hollow-knight", email="held@example.com")
    order_id = pay_with_crypto(page)
    page.get_by_test_id("sandbox-pay").click()
    expect(hint).to_contain_text("Your keys are delayed")
    expect(hint).not_to_contain_text("on their way")
    expect_status(page, "Payment confirmed!")
    assert "product_unavailable" in order_json(server, order_id, token_of(page))["flags"]
    assert_no_violations(page, "a paid order held for the staff")
    screenshot(page, "keys-held")

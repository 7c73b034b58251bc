"""The shop's own name and sender on its emails, and a completion email of its own.

``BITLOOT_SHOP_NAME`` and ``BITLOOT_MAIL_FROM`` reach the email a real sandbox purchase
sends (read back from the ``.eml`` file the mailer wrote). ``CheckoutConfig``'s
``completion_email`` is tested with the core (tests/core/test_completion_email.py).
"""

from __future__ import annotations

import email
import email.policy
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))

from flow import GIFT_CARD, buy

from bitloot_adapters.settings import ConfigError, load_settings
from support.servers import running_server


def sent_mail(mail_dir: Path) -> email.message.EmailMessage:
    deadline = time.monotonic() + 15
    while not (found := sorted(mail_dir.glob("*.eml"))):
        assert time.monotonic() < deadline, "no email was written"
        time.sleep(0.05)
    (path,) = found
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def test_the_shop_name_and_sender_are_on_its_emails(tmp_path: Path) -> None:
    env = {"BITLOOT_SHOP_NAME": "Pixel Keys", "BITLOOT_MAIL_FROM": "Pixel Keys <k@pixel.example>"}
    with running_server("flask", tmp_path / "data", env) as server:
        order = buy(server, GIFT_CARD)
        message = sent_mail(tmp_path / "data" / "mail")
    assert message["From"] == "Pixel Keys <k@pixel.example>"
    assert message["Subject"] == f"Your Pixel Keys keys (order {order['id']})"


def test_the_sender_defaults_to_the_shop_name(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, env={"BITLOOT_SHOP_NAME": "Pixel Keys"})
    assert (settings.shop_name, settings.mail_from) == (
        "Pixel Keys",
        "Pixel Keys <keys@bitloot.invalid>",
    )
    plain = load_settings(data_dir=tmp_path, env={})
    assert (plain.shop_name, plain.mail_from) == ("bitloot", "bitloot <keys@bitloot.invalid>")


@pytest.mark.parametrize(
    "sender",
    ["keys@a.example, thief@b.example", "no address", "Shop <keys@localhost>", "a@b.example\x00"],
)
def test_a_sender_that_is_not_one_address_is_refused(tmp_path: Path, sender: str) -> None:
    with pytest.raises(ConfigError, match="BITLOOT_MAIL_FROM must be"):
        load_settings(data_dir=tmp_path, env={"BITLOOT_MAIL_FROM": sender})

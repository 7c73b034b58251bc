"""The completion email from the shop's own template files (``BITLOOT_EMAIL_TEMPLATE_DIR``).

A real sandbox purchase on a running server sends it (read back from the ``.eml`` file the
mailer wrote); a template that names an unknown placeholder, lacks a file or is not valid
``string.Template`` text stops the start with a message naming the file.
"""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))

from flow import GIFT_CARD, buy

from bitloot_adapters.bootstrap import build_shop
from bitloot_adapters.email_template import PLACEHOLDERS, TemplateEmail
from bitloot_adapters.settings import ConfigError, load_settings
from support.servers import EXAMPLES, running_server

SUBJECT = "$shop_name: order $order_id is ready\n"
BODY_TXT = """Hello $email,

Thank you for shopping at $shop_name. Order $order_id ($total $currency):
$items
All your keys: $order_url
"""
BODY_HTML = """<p>Thank you for shopping at <b>$shop_name</b>.</p>
$items
<p><a href="$order_url">Order $order_id</a>: $total $currency</p>
"""


def sent_mail(mail_dir: Path) -> email.message.EmailMessage:
    deadline = time.monotonic() + 15
    while not (found := sorted(mail_dir.glob("*.eml"))):
        assert time.monotonic() < deadline, "no email was written"
        time.sleep(0.05)
    (path,) = found
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def write_template(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    texts = {"subject.txt": SUBJECT, "body.txt": BODY_TXT, "body.html": BODY_HTML}
    for name, text in (texts | {k.replace("_", "."): v for k, v in files.items()}).items():
        (folder / name).write_text(text)
    return folder


def test_a_purchase_sends_the_shops_own_email(tmp_path: Path) -> None:
    template = write_template(tmp_path / "email")
    env = {"BITLOOT_EMAIL_TEMPLATE_DIR": str(template), "BITLOOT_SHOP_NAME": "Keys & <Co>"}
    with running_server("flask", tmp_path / "data", env) as server:
        order = buy(server, GIFT_CARD)
        message = sent_mail(tmp_path / "data" / "mail")
    order_id = order["id"]
    (item,) = order["items"]
    assert message["Subject"] == f"Keys & <Co>: order {order_id} is ready"
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    link = text.rpartition("All your keys: ")[2].strip()
    assert link.startswith(f"{server.url}/order/{order_id}?token=")
    assert text == (
        f"Hello {order['email']},\n\nThank you for shopping at Keys & <Co>. Order {order_id} "
        f"({order['total']} {order['currency']}):\n"
        f"- {item['name']} x1: {link}#item-{item['id']}\n"
        f"All your keys: {link}\n"
    )
    page = message.get_body(("html",)).get_content()
    assert "<b>Keys &amp; &lt;Co&gt;</b>" in page
    assert f'<li><a href="{link}#item-{item["id"]}">{item["name"]} x1</a></li>' in page
    assert f'<a href="{link}">Order {order_id}</a>' in page
    assert not [name for name in PLACEHOLDERS if f"${name}" in text + page]
    # The key itself (a demo pool's GIFT-...) is only behind the order page, never here.
    assert "GIFT-" not in message.as_string()


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        (
            {"subject_txt": "Your $shop_nam order\n"},
            r"subject\.txt: unknown placeholder \$shop_nam",
        ),
        ({"body_html": "<p>${order_id</p>"}, r"body\.html: .*invalid"),
        ({"body_txt": "Keys: $keys\n"}, r"body\.txt: unknown placeholder \$keys"),
        ({"subject_txt": "two\nlines\n"}, r"subject\.txt: .*one line"),
    ],
)
def test_a_bad_template_is_a_start_up_error(
    tmp_path: Path, files: dict[str, str], problem: str
) -> None:
    template = write_template(tmp_path / "email", **files)
    settings = load_settings(
        data_dir=tmp_path / "data", env={"BITLOOT_EMAIL_TEMPLATE_DIR": str(template)}
    )
    with pytest.raises(ConfigError, match=problem):
        build_shop(settings)
    assert not (tmp_path / "data" / "bitloot.db").exists()


def test_a_missing_template_file_is_named(tmp_path: Path) -> None:
    template = write_template(tmp_path / "email")
    (template / "body.html").unlink()
    with pytest.raises(ConfigError, match=r"body\.html"):
        TemplateEmail.load(template)


def test_a_missing_template_dir_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match="BITLOOT_EMAIL_TEMPLATE_DIR"):
        load_settings(data_dir=tmp_path / "data", env={"BITLOOT_EMAIL_TEMPLATE_DIR": str(missing)})


def test_the_example_server_stops_on_a_bad_template(tmp_path: Path) -> None:
    template = write_template(tmp_path / "email", body_txt="Keys: $keys\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
    env["BITLOOT_EMAIL_TEMPLATE_DIR"] = str(template)
    started = subprocess.run(  # noqa: S603 - our own example server
        [sys.executable, str(EXAMPLES / "flask_server.py"), "--data-dir", str(tmp_path / "d")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode != 0
    assert "body.txt: unknown placeholder $keys" in started.stderr
    assert "Traceback" not in started.stderr


def test_every_placeholder_is_documented() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for name in PLACEHOLDERS:
        assert f"`${name}`" in guide, name

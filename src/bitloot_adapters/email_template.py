"""The completion email from a shop's own template files, replaceable without Python.

``BITLOOT_EMAIL_TEMPLATE_DIR`` holds ``subject.txt``, ``body.txt`` and ``body.html`` in
``string.Template`` syntax (``$name`` or ``${name}``; ``$$`` is a dollar sign). The
placeholders are ``PLACEHOLDERS``; in ``body.html`` every value is HTML-escaped and
``$items`` is a list of links. The facts an email gets never hold a key: the keys stay
behind the order page the links open. Every file is read and checked once, at start-up;
a missing file, invalid syntax or an unknown placeholder is a ``ConfigError``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Final

from bitloot_adapters.settings import ConfigError
from bitloot_core.service import CompletionFacts, EmailContent

# What each placeholder is (also the table in docs/configuration.md).
PLACEHOLDERS: Final = {
    "shop_name": "the shop's name (BITLOOT_SHOP_NAME)",
    "order_id": "the order's id",
    "email": "the customer's email address",
    "total": "the order's total, e.g. 10.00",
    "currency": "the order's currency, e.g. EUR",
    "order_url": "the order page, where the customer reveals every key",
    "items": "the items: lines of name, quantity and link (a <ul> in HTML; names in the subject)",
}
FILES: Final = ("subject.txt", "body.txt", "body.html")


def _template(folder: Path, name: str) -> Template:
    path = folder / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"email template {path}: the file is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"email template {path}: cannot be read ({exc})") from None
    template = Template(text)
    if not template.is_valid():
        raise ConfigError(
            f"email template {path}: invalid placeholder syntax (write $name or ${{name}}, "
            "and $$ for a dollar sign)"
        )
    for identifier in template.get_identifiers():
        if identifier not in PLACEHOLDERS:
            known = ", ".join(f"${p}" for p in PLACEHOLDERS)
            raise ConfigError(
                f"email template {path}: unknown placeholder ${identifier} (known: {known})"
            )
    if name == "subject.txt" and "\n" in text.strip():
        raise ConfigError(f"email template {path}: the subject must be one line")
    return template


@dataclass(frozen=True, slots=True)
class TemplateEmail:
    """A ``CompletionEmail`` (``CheckoutConfig.completion_email``) from template files."""

    subject: Template
    text: Template
    html: Template

    @classmethod
    def load(cls, folder: Path) -> TemplateEmail:
        subject, text, page = (_template(folder, name) for name in FILES)
        return cls(subject=subject, text=text, html=page)

    def __call__(self, facts: CompletionFacts, /) -> EmailContent:
        order = facts.order
        values = {
            "shop_name": facts.shop_name,
            "order_id": order.id,
            "email": order.email,
            "total": str(order.total),
            "currency": order.currency,
            "order_url": facts.order_url,
        }
        lines = [
            f"- {item.name} x{item.quantity}: {facts.item_urls[item.id]}" for item in order.items
        ]
        links = "".join(
            f'<li><a href="{html.escape(facts.item_urls[item.id])}">'
            f"{html.escape(item.name)} x{item.quantity}</a></li>"
            for item in order.items
        )
        subject = self.subject.substitute(
            values | {"items": ", ".join(i.name for i in order.items)}
        )
        return EmailContent(
            # One line, whatever a product's name holds.
            subject=" ".join(subject.split()),
            text=self.text.substitute(values | {"items": "\n".join(lines)}),
            html=self.html.substitute(
                {k: html.escape(v) for k, v in values.items()} | {"items": f"<ul>{links}</ul>"}
            ),
        )

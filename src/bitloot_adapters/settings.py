"""Configuration from environment variables, with secrets kept in the data directory.

With no NowPayments API key the shop runs in sandbox mode. Secrets that the environment
does not set are generated once and kept in ``<data dir>/secrets.json`` (mode 0600); an
environment variable always wins. ``Settings`` never shows a secret in its ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final

PREFIX: Final = "BITLOOT_"
SECRETS_FILE: Final = "secrets.json"
VAULT_KEY_BYTES: Final = 32


class ConfigError(Exception):
    """A missing or malformed setting; the message names the variable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    data_dir: Path
    public_url: str
    sandbox: bool
    nowpayments_api_key: str = field(repr=False)
    nowpayments_base_url: str
    ipn_secret: str = field(repr=False)
    kinguin_api_key: str = field(repr=False)
    kinguin_base_url: str
    vault_key: bytes = field(repr=False)
    signing_key: bytes = field(repr=False)
    admin_token: str = field(repr=False)
    smtp_url: str | None = field(repr=False)
    order_ttl: timedelta
    key_url_ttl: timedelta
    underpay_tolerance_percent: Decimal
    pay_currency: str
    job_lease: timedelta = timedelta(minutes=2)
    sqlite_synchronous: str = "FULL"
    # Names of secrets generated (not read from the environment) in this start.
    generated: frozenset[str] = frozenset()

    @property
    def admin_token_generated(self) -> bool:
        return "admin_token" in self.generated


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{PREFIX}{name} must be between {low} and {high}, got {value}")
    return value


def _decimal(env: Mapping[str, str], name: str, default: Decimal) -> Decimal:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ConfigError(f"{PREFIX}{name} must be a decimal number, got {raw!r}") from None
    if not value.is_finite() or not Decimal(0) <= value < Decimal(100):
        raise ConfigError(f"{PREFIX}{name} must be at least 0 and below 100")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    """One of ``allowed`` (case-insensitive); the first is the default."""
    raw = (env.get(PREFIX + name) or allowed[0]).upper()
    if raw not in allowed:
        raise ConfigError(f"{PREFIX}{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


def _key(raw: str, name: str) -> bytes:
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{PREFIX}{name} must be base64") from None
    if len(key) != VAULT_KEY_BYTES:
        raise ConfigError(f"{PREFIX}{name} must decode to {VAULT_KEY_BYTES} bytes")
    return key


class _Secrets:
    """Secrets kept in the data dir: read once, generated when missing, written 0600."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / SECRETS_FILE
        self.values: dict[str, str] = {}
        self.generated: set[str] = set()
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{self.path} is unreadable: {type(exc).__name__}") from None
            if not isinstance(loaded, dict):
                raise ConfigError(f"{self.path} must hold a JSON object")
            self.values = {str(k): str(v) for k, v in loaded.items()}

    def get(self, name: str, make: str) -> str:
        if name not in self.values:
            self.values[name] = make
            self.generated.add(name)
        return self.values[name]

    def save(self) -> None:
        if not self.generated:
            return
        temp = self.path.with_suffix(".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(self.values, out, indent=2, sort_keys=True)
        temp.replace(self.path)


def load_settings(
    *,
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Read the environment (``os.environ`` by default) and the data dir's secrets."""
    env = os.environ if env is None else env
    data_dir.mkdir(parents=True, exist_ok=True)
    stored = _Secrets(data_dir)

    def secret(name: str, make: str) -> str:
        return env.get(PREFIX + name.upper()) or stored.get(name, make)

    api_key = env.get(PREFIX + "NOWPAYMENTS_API_KEY", "")
    sandbox = api_key == ""
    kinguin_key = env.get(PREFIX + "KINGUIN_API_KEY", "")
    if not sandbox:
        missing = [
            PREFIX + name
            for name in ("NOWPAYMENTS_IPN_SECRET", "KINGUIN_API_KEY")
            if not env.get(PREFIX + name)
        ]
        if missing:
            raise ConfigError(f"missing required settings: {', '.join(missing)}")
    vault_key = _key(
        secret("vault_key", base64.b64encode(secrets.token_bytes(32)).decode()), "VAULT_KEY"
    )
    signing_key = _key(
        secret("signing_key", base64.b64encode(secrets.token_bytes(32)).decode()), "SIGNING_KEY"
    )
    settings = Settings(
        data_dir=data_dir,
        public_url=(env.get(PREFIX + "PUBLIC_URL") or f"http://{host}:{port}").rstrip("/"),
        sandbox=sandbox,
        nowpayments_api_key=api_key or secret("sandbox_nowpayments_api_key", secrets.token_hex(16)),
        nowpayments_base_url=env.get(PREFIX + "NOWPAYMENTS_BASE_URL", ""),
        ipn_secret=secret("nowpayments_ipn_secret", secrets.token_hex(32)),
        kinguin_api_key=kinguin_key or secret("sandbox_kinguin_api_key", secrets.token_hex(16)),
        kinguin_base_url=env.get(PREFIX + "KINGUIN_BASE_URL", ""),
        vault_key=vault_key,
        signing_key=signing_key,
        admin_token=secret("admin_token", secrets.token_urlsafe(32)),
        smtp_url=env.get(PREFIX + "SMTP_URL") or None,
        order_ttl=timedelta(minutes=_int(env, "ORDER_TTL_MINUTES", 60, low=1, high=7 * 24 * 60)),
        key_url_ttl=timedelta(
            seconds=_int(env, "KEY_URL_TTL_SECONDS", 10800, low=1, high=7 * 24 * 3600)
        ),
        underpay_tolerance_percent=_decimal(env, "UNDERPAY_TOLERANCE_PERCENT", Decimal(0)),
        pay_currency=(env.get(PREFIX + "PAY_CURRENCY") or "btc").lower(),
        job_lease=timedelta(seconds=_int(env, "JOB_LEASE_SECONDS", 120, low=1, high=24 * 3600)),
        sqlite_synchronous=_choice(env, "SQLITE_SYNCHRONOUS", ("FULL", "NORMAL")),
        generated=frozenset(stored.generated),
    )
    stored.save()
    return settings

"""Configuration from environment variables, with secrets kept in the data directory.

Configuration fails closed. Every ``BITLOOT_*`` variable must be one the shop knows
(``KNOWN_VARIABLES``): any other is a start-up error naming it and the closest known
name, since a misspelt live setting would otherwise start a sandbox. ``BITLOOT_MODE`` is
``sandbox`` or ``live``; unset, it is ``sandbox`` only when the server listens on a
loopback host, and a start-up error otherwise. A live-only variable in sandbox mode, or
a missing one in live mode, is a start-up error too. Secrets that the environment
does not set are generated once and kept in ``<data dir>/secrets.json`` (mode 0600); an
environment variable always wins. With ``BITLOOT_DATABASE_URL`` set (the shared
PostgreSQL store of a shop on many hosts) nothing a host must share may live on its disk:
the IPN secret, the vault and signing keys and the admin token must then come from the
environment, and keys go to the database vault unless ``BITLOOT_VAULT`` says otherwise.
Processes starting together on one data dir take turns on ``<data dir>/secrets.lock``, so
they all end up with the same, saved secrets.
``Settings`` never shows a secret in its ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import email.utils
import fcntl
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from bitloot_adapters import files
from bitloot_adapters.shop_mode import ModeMismatchError, claim_data_dir, data_dir_mode, mode_of

PREFIX: Final = "BITLOOT_"
SECRETS_FILE: Final = "secrets.json"
SECRETS_LOCK: Final = "secrets.lock"
VAULT_KEY_BYTES: Final = 32
SANDBOX: Final = "sandbox"
LIVE: Final = "live"

# Every variable the shop reads (without the prefix). Reading a new one? Add it here and
# to docs/configuration.md: a name missing here stops every start that sets it.
KNOWN_VARIABLES: Final = frozenset(
    {
        "MODE",
        "NOWPAYMENTS_API_KEY",
        "NOWPAYMENTS_BASE_URL",
        "NOWPAYMENTS_IPN_SECRET",
        "KINGUIN_API_KEY",
        "KINGUIN_BASE_URL",
        "KINGUIN_WEBHOOK_SECRET",
        "VAULT_KEY",
        "SIGNING_KEY",
        "ADMIN_TOKEN",
        "SMTP_URL",
        "PUBLIC_URL",
        "ORDER_TTL_MINUTES",
        "KEY_URL_TTL_SECONDS",
        "UNDERPAY_TOLERANCE_PERCENT",
        "PAY_CURRENCY",
        "JOB_LEASE_SECONDS",
        "SQLITE_SYNCHRONOUS",
        "S3_BUCKET",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
        "R2_ACCOUNT_ID",
        "S3_ENDPOINT_URL",
        "MAIL_DIR",
        "DATA_DIR",
        "PAYMENT_PROVIDERS",
        "BTCPAY_URL",
        "BTCPAY_API_KEY",
        "BTCPAY_STORE_ID",
        "BTCPAY_WEBHOOK_SECRET",
        "DATABASE_URL",
        "DATABASE_POOL_SIZE",
        "DATABASE_TIMEOUT_SECONDS",
        "VAULT",
        "SANDBOX_URL",
        "SHOP_NAME",
        "MAIL_FROM",
        "EMAIL_TEMPLATE_DIR",
        "RATE_LIMIT_ORDERS_PER_MINUTE",
        "RATE_LIMIT_PAYMENTS_PER_MINUTE",
        "RATE_LIMIT_WEBHOOK_REJECTS_PER_MINUTE",
        "TRUSTED_PROXIES",
        "NOWPAYMENTS_IPN_SECRET_PREVIOUS",
        "METRICS_TOKEN",
    }
)
# Read by the project's own test and benchmark tools, never by the shop: allowed so that
# a developer's environment does not stop the servers those tools start.
TOOL_VARIABLES: Final = frozenset(
    {"PG_BINDIR", "UPDATE_SCREENSHOT", "BENCH_BODIES", "BENCH_CLIENTS"}
)
# Variables that point the shop at a real provider: refused in sandbox mode.
LIVE_ONLY: Final = (
    "NOWPAYMENTS_API_KEY",
    "NOWPAYMENTS_BASE_URL",
    "KINGUIN_API_KEY",
    "KINGUIN_BASE_URL",
    "BTCPAY_URL",
    "BTCPAY_API_KEY",
    "BTCPAY_STORE_ID",
    "BTCPAY_WEBHOOK_SECRET",
)
# How a process picks its mode, for the message refusing a data dir of the other mode.
HOW_TO_SWITCH: Final = (
    f"live mode: set {PREFIX}MODE=live and the live variables; "
    f"sandbox mode: {PREFIX}MODE=sandbox (the default on a loopback host)"
)


class ConfigError(Exception):
    """A missing or malformed setting; the message names the variable."""


def _problem(attribute: attrs.Attribute[Any], problem: str) -> ConfigError:
    return ConfigError(f"{attribute.name} {problem}")


def _positive(_: object, attribute: attrs.Attribute[Any], value: timedelta) -> None:
    if value <= timedelta(0):
        raise _problem(attribute, "must be a positive duration")


def _key_bytes(_: object, attribute: attrs.Attribute[Any], value: bytes) -> None:
    if len(value) != VAULT_KEY_BYTES:
        raise _problem(attribute, f"must be {VAULT_KEY_BYTES} bytes")


def _percent(_: object, attribute: attrs.Attribute[Any], value: Decimal) -> None:
    if not value.is_finite() or not Decimal(0) <= value < Decimal(100):
        raise _problem(attribute, "must be at least 0 and below 100")


def _public_url_ok(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    problem = _url_problem(value)
    if problem:
        raise _problem(attribute, problem)


def _not_empty(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value:
        raise _problem(attribute, "must not be empty")


def _mailbox_problem(value: str) -> str | None:
    """What is wrong with ``value`` as one From address (``Shop <keys@shop.example>``)."""
    if any(not c.isprintable() for c in value):
        return "must be printable text on one line"
    try:
        addresses = email.utils.getaddresses([value], strict=True)
    except TypeError:  # Python before 3.11.10 has no strict parsing
        addresses = email.utils.getaddresses([value])
    if len(addresses) != 1:
        return "must be exactly one address"
    local, _, domain = addresses[0][1].partition("@")
    if not local or "." not in domain or any(c.isspace() for c in addresses[0][1]):
        return "must be an address such as 'My shop <keys@shop.example>'"
    return None


def _mailbox(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    problem = _mailbox_problem(value)
    if problem:
        raise _problem(attribute, problem)


_CURRENCY = re.compile(r"^[a-z0-9]+$")


def _currency(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not _CURRENCY.match(value):
        raise _problem(attribute, "must be a lower-case currency code such as btc")


def _one_of(*allowed: str) -> Callable[[object, attrs.Attribute[Any], str], None]:
    def check(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in allowed:
            raise _problem(attribute, f"must be one of {', '.join(allowed)}")

    return check


def _database_url_ok(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and urlsplit(value).scheme not in _DATABASE_SCHEMES:
        # The URL may hold a password: the message names the variable, never the value.
        raise _problem(attribute, "must be a postgresql:// URL")


def _pool_size(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 1 <= value <= MAX_POOL_SIZE:
        raise _problem(attribute, f"must be between 1 and {MAX_POOL_SIZE}")


_DATABASE_SCHEMES: Final = ("postgresql", "postgres")
MAX_POOL_SIZE: Final = 100
VAULTS: Final = ("database", "file", "s3")
# What a shop on a shared database must be given, by setting and by what it is.
_SHARED_SECRETS: Final = (
    ("NOWPAYMENTS_IPN_SECRET", "the IPN secret"),
    ("VAULT_KEY", "the vault key"),
    ("SIGNING_KEY", "the key-URL signing key"),
    ("ADMIN_TOKEN", "the admin token"),
)


@attrs.frozen(kw_only=True)
class S3Settings:
    """Where the S3/R2 vault keeps keys (set ``BITLOOT_S3_BUCKET`` to use it)."""

    bucket: str = attrs.field(validator=_not_empty)
    access_key_id: str = attrs.field(validator=_not_empty)
    secret_access_key: str = attrs.field(repr=False, validator=_not_empty)
    # Cloudflare R2's account id, or any S3-compatible endpoint URL.
    account_id: str = ""
    endpoint_url: str | None = None


# Every payment provider the shop can run, in the order sandbox mode offers them.
PAYMENT_PROVIDERS: Final = ("nowpayments", "btcpay")


def _providers_problem(value: tuple[str, ...]) -> str | None:
    unknown = [name for name in value if name not in PAYMENT_PROVIDERS]
    if not value:
        return "must name at least one payment provider"
    if unknown:
        return f"names {unknown[0][:40]!r}; choose from {', '.join(PAYMENT_PROVIDERS)}"
    if len(set(value)) != len(value):
        return "names a provider twice"
    return None


def _providers(_: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    problem = _providers_problem(value)
    if problem:
        raise _problem(attribute, problem)


def _server_url(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    problem = _url_problem(value) if value else None
    if problem:
        raise _problem(attribute, problem)


@attrs.frozen(kw_only=True)
class BtcPaySettings:
    """The BTCPay Server store the shop takes payments with (``BITLOOT_BTCPAY_*``).

    ``url`` is empty in sandbox mode: the sandbox's own address is used.
    """

    url: str = attrs.field(validator=_server_url)
    api_key: str = attrs.field(repr=False, validator=_not_empty)
    store_id: str = attrs.field(validator=_not_empty)
    # The secret of the store's webhook to {public_url}/webhooks/btcpay (BTCPay-Sig).
    webhook_secret: str = attrs.field(repr=False, validator=_not_empty)


@attrs.frozen(kw_only=True)
class Settings:
    """A shop's settings. ``load_settings`` reads them from the environment; a host
    application may build them in code: each field is checked either way, and a bad one
    is a ``ConfigError`` naming it. Secrets never show in the ``repr``."""

    data_dir: Path
    public_url: str = attrs.field(validator=_public_url_ok)
    sandbox: bool
    nowpayments_api_key: str = attrs.field(repr=False)
    nowpayments_base_url: str
    ipn_secret: str = attrs.field(repr=False, validator=_not_empty)
    # During a rotation: the IPN secret being replaced, still accepted beside ipn_secret.
    ipn_secret_previous: str | None = attrs.field(default=None, repr=False)
    # When set, GET /metrics needs ``Authorization: Bearer`` with it.
    metrics_token: str | None = attrs.field(default=None, repr=False)
    kinguin_api_key: str = attrs.field(repr=False)
    kinguin_base_url: str
    vault_key: bytes = attrs.field(repr=False, validator=_key_bytes)
    signing_key: bytes = attrs.field(repr=False, validator=_key_bytes)
    admin_token: str = attrs.field(repr=False, validator=_not_empty)
    smtp_url: str | None = attrs.field(repr=False)
    order_ttl: timedelta = attrs.field(validator=_positive)
    key_url_ttl: timedelta = attrs.field(validator=_positive)
    underpay_tolerance_percent: Decimal = attrs.field(validator=_percent)
    pay_currency: str = attrs.field(validator=_currency)
    job_lease: timedelta = attrs.field(default=timedelta(minutes=2), validator=_positive)
    sqlite_synchronous: str = attrs.field(default="FULL", validator=_one_of("FULL", "NORMAL"))
    # Kinguin's order.status webhook secret; None: POST /webhooks/kinguin answers 401.
    kinguin_webhook_secret: str | None = attrs.field(default=None, repr=False)
    # The S3/R2 vault's bucket and credentials (used when ``vault_kind`` is ``s3``).
    s3: S3Settings | None = None
    # Where completion emails go as .eml files when there is no SMTP server: in live mode
    # only when set on purpose (``BITLOOT_MAIL_DIR``); None: ``<data dir>/mail``.
    mail_dir: Path | None = None
    # The shared PostgreSQL store; None keeps the SQLite file in the data dir.
    database_url: str | None = attrs.field(default=None, repr=False, validator=_database_url_ok)
    # Connections each process keeps open to it, at most.
    database_pool_size: int = attrs.field(default=10, validator=_pool_size)
    # How long a request waits for a connection before it answers 503.
    database_timeout: timedelta = attrs.field(default=timedelta(seconds=10), validator=_positive)
    # Where keys are kept: database, file or s3; None: s3 when ``s3`` is set, else file.
    vault: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(_one_of(*VAULTS))
    )
    # Names of secrets this start generated and saved in the data dir: empty when they
    # came from the environment or were already kept (by an earlier start, or by another
    # process starting at the same time).
    generated: frozenset[str] = frozenset()
    # Requests a minute per client (see ``rate_limits``); 0 turns a limit off.
    rate_limit_orders_per_minute: int = 60
    rate_limit_payments_per_minute: int = 60
    rate_limit_webhook_rejects_per_minute: int = 60
    # Proxies whose X-Forwarded-For names the client (addresses or networks).
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Sandbox mode only: a ``bitloot sandbox`` to use instead of starting one's own.
    sandbox_url: str | None = None
    # The shop's name (email subjects, payment descriptions) and the From of its emails.
    shop_name: str = attrs.field(default="bitloot", validator=_not_empty)
    mail_from: str = attrs.field(default="bitloot <keys@bitloot.invalid>", validator=_mailbox)
    # The completion email's subject.txt, body.txt and body.html (None: the built-in one).
    email_template_dir: Path | None = None
    # The payment providers offered, the default first (BITLOOT_PAYMENT_PROVIDERS).
    payment_providers: tuple[str, ...] = attrs.field(default=("nowpayments",), validator=_providers)
    # BTCPay Server's store; required when "btcpay" is among the payment providers.
    btcpay: BtcPaySettings | None = None

    def __attrs_post_init__(self) -> None:
        if "btcpay" in self.payment_providers and self.btcpay is None:
            raise ConfigError("btcpay settings are required to offer BTCPay Server")
        if self.btcpay is not None and not self.sandbox and not self.btcpay.url:
            raise ConfigError("btcpay url is required in live mode")
        if self.vault == "s3" and self.s3 is None:
            raise ConfigError("vault s3 needs the S3 settings (BITLOOT_S3_BUCKET and the rest)")

    @property
    def admin_token_generated(self) -> bool:
        return "admin_token" in self.generated

    @property
    def mode(self) -> str:
        """``sandbox`` or ``live``: what a start prints and ``/healthz`` shows."""
        return mode_of(self.sandbox)

    @property
    def vault_kind(self) -> str:
        """The vault the shop uses: ``database``, ``file`` or ``s3``."""
        return self.vault or ("s3" if self.s3 is not None else "file")


def _s3(env: Mapping[str, str]) -> S3Settings | None:
    bucket = env.get(PREFIX + "S3_BUCKET", "")
    if not bucket:
        return None
    names = ("S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY")
    missing = [PREFIX + name for name in names if not env.get(PREFIX + name)]
    account, endpoint = env.get(PREFIX + "R2_ACCOUNT_ID", ""), env.get(PREFIX + "S3_ENDPOINT_URL")
    if not account and not endpoint:
        missing.append(f"{PREFIX}R2_ACCOUNT_ID or {PREFIX}S3_ENDPOINT_URL")
    if missing:
        raise ConfigError(f"{PREFIX}S3_BUCKET is set, so these are required: {', '.join(missing)}")
    return S3Settings(
        bucket=bucket,
        access_key_id=env[PREFIX + "S3_ACCESS_KEY_ID"],
        secret_access_key=env[PREFIX + "S3_SECRET_ACCESS_KEY"],
        account_id=account,
        endpoint_url=endpoint or None,
    )


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


# Secrets kept in the data dir, and how to make each when it is missing. The sandbox keys
# only pair the shop with its own loopback sandboxes: they are never read from the
# environment.
_KEPT: Final[dict[str, Callable[[], str]]] = {
    "vault_key": lambda: base64.b64encode(secrets.token_bytes(VAULT_KEY_BYTES)).decode(),
    "signing_key": lambda: base64.b64encode(secrets.token_bytes(VAULT_KEY_BYTES)).decode(),
    "nowpayments_ipn_secret": lambda: secrets.token_hex(32),
    "admin_token": lambda: secrets.token_urlsafe(32),
    "sandbox_nowpayments_api_key": lambda: secrets.token_hex(16),
    "sandbox_kinguin_api_key": lambda: secrets.token_hex(16),
    "sandbox_btcpay_api_key": lambda: secrets.token_hex(16),
    "sandbox_btcpay_webhook_secret": lambda: secrets.token_hex(32),
}
_SANDBOX_ONLY: Final = frozenset(
    {
        "sandbox_nowpayments_api_key",
        "sandbox_kinguin_api_key",
        "sandbox_btcpay_api_key",
        "sandbox_btcpay_webhook_secret",
    }
)
SANDBOX_BTCPAY_STORE: Final = "sandbox-store"
# What each provider needs in live mode.
_PROVIDER_SETTINGS: Final = {
    "nowpayments": ("NOWPAYMENTS_API_KEY", "NOWPAYMENTS_IPN_SECRET"),
    "btcpay": ("BTCPAY_URL", "BTCPAY_API_KEY", "BTCPAY_STORE_ID", "BTCPAY_WEBHOOK_SECRET"),
}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600, never removed)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _read_secrets(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path} is unreadable: {type(exc).__name__}") from None
    try:
        loaded = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is unreadable: {type(exc).__name__}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return {str(k): str(v) for k, v in loaded.items()}


def _secrets_json(values: Mapping[str, str]) -> bytes:
    return json.dumps(dict(values), indent=2, sort_keys=True).encode()


def _kept_secrets(data_dir: Path, wanted: frozenset[str]) -> tuple[dict[str, str], set[str]]:
    """The data dir's secrets, with any of ``wanted`` that is missing generated and saved.

    Returns what ``secrets.json`` holds after the call, and the names this call
    generated. Reading, generating and writing happen under an exclusive lock on
    ``secrets.lock``, so processes starting together on one data dir (the web server and
    ``bitloot worker``, say) generate each secret once and all use the saved value.
    """
    path = data_dir / SECRETS_FILE
    with _locked(data_dir / SECRETS_LOCK):
        current = _read_secrets(path)
        made = {name: _KEPT[name]() for name in sorted(wanted) if name not in current}
        if made:
            if path.exists() or not files.create_once(path, _secrets_json(current | made)):
                # The file is there (perhaps just written by something that does not take
                # the lock): keep what it holds and add only what it lacks.
                current = _read_secrets(path)
                made = {name: value for name, value in made.items() if name not in current}
                files.replace_whole(path, _secrets_json(current | made))
            current = _read_secrets(path)
    generated = {name for name, value in made.items() if current.get(name) == value}
    return current, generated


def _url_problem(raw: str) -> str | None:
    """What is wrong with ``raw`` as the shop's public base URL, or None."""
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "is not a valid URL"
    checks = (
        (parts.scheme not in ("http", "https"), "must start with http:// or https://"),
        (not parts.hostname, "must name a host"),
        ("?" in raw or "#" in raw, "must not have a query or fragment"),
        (parts.username is not None or parts.password is not None, "must not hold credentials"),
        (any(c.isspace() or not c.isprintable() for c in raw), "must not contain spaces"),
    )
    return next((problem for failed, problem in checks if failed), None)


def _public_url(env: Mapping[str, str], *, host: str, port: int, sandbox: bool) -> str:
    """``BITLOOT_PUBLIC_URL`` checked (required in live mode), without a trailing slash."""
    name = PREFIX + "PUBLIC_URL"
    raw = env.get(name, "")
    if raw == "":
        if not sandbox:
            raise ConfigError(
                f"{name} is required in live mode: payment providers send their webhooks "
                f"to {name}/webhooks/<provider>, and key links in emails use it"
            )
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    problem = _url_problem(raw)
    if problem:
        raise ConfigError(f"{name} {problem} (an absolute URL such as https://shop.example)")
    return raw.rstrip("/")


def _payment_providers(env: Mapping[str, str], *, sandbox: bool) -> tuple[str, ...]:
    """``BITLOOT_PAYMENT_PROVIDERS`` checked; by default every provider in sandbox mode,
    else those whose API key is set."""
    name = PREFIX + "PAYMENT_PROVIDERS"
    raw = env.get(name, "").strip()
    if not raw:
        if sandbox:
            return PAYMENT_PROVIDERS
        return tuple(p for p in PAYMENT_PROVIDERS if env.get(f"{PREFIX}{p.upper()}_API_KEY"))
    chosen = tuple(part.strip().lower() for part in raw.split(","))
    problem = _providers_problem(chosen)
    if problem:
        raise ConfigError(f"{name} {problem} (such as nowpayments,btcpay)")
    return chosen


def _btcpay(env: Mapping[str, str], kept: Mapping[str, str], *, sandbox: bool) -> BtcPaySettings:
    if sandbox:
        return BtcPaySettings(
            url="",
            api_key=kept["sandbox_btcpay_api_key"],
            store_id=SANDBOX_BTCPAY_STORE,
            webhook_secret=kept["sandbox_btcpay_webhook_secret"],
        )
    url = env[PREFIX + "BTCPAY_URL"]
    problem = _url_problem(url)
    if problem:
        raise ConfigError(f"{PREFIX}BTCPAY_URL {problem} (such as https://btcpay.example)")
    return BtcPaySettings(
        url=url.rstrip("/"),
        api_key=env[PREFIX + "BTCPAY_API_KEY"],
        store_id=env[PREFIX + "BTCPAY_STORE_ID"],
        webhook_secret=env[PREFIX + "BTCPAY_WEBHOOK_SECRET"],
    )


def _proxies(env: Mapping[str, str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    name = PREFIX + "TRUSTED_PROXIES"
    try:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in env.get(name, "").split(",")
            if part.strip()
        )
    except ValueError:
        raise ConfigError(
            f"{name} must list IP addresses or networks, comma-separated (such as 10.0.0.0/8)"
        ) from None


def check_names(env: Mapping[str, str]) -> None:
    """Refuse any ``BITLOOT_*`` variable the shop does not know, naming the closest one.

    Only names are shown, never values (a misspelt secret is still a secret)."""
    known = sorted(PREFIX + name for name in KNOWN_VARIABLES)
    for name in sorted(env):
        if not name.startswith(PREFIX):
            continue
        bare = name.removeprefix(PREFIX)
        if bare in KNOWN_VARIABLES or bare in TOOL_VARIABLES:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f": did you mean {close[0]}?" if close else ""
        raise ConfigError(
            f"unknown setting {name} (see docs/configuration.md for the known ones){hint}"
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _mode(env: Mapping[str, str], host: str) -> str:
    """``BITLOOT_MODE``: given, or ``sandbox`` on a loopback host; then the mode's checks."""
    name = PREFIX + "MODE"
    raw = env.get(name, "").strip().lower()
    if raw == "":
        if not is_loopback(host):
            raise ConfigError(
                f"{name} is required when listening on {host!r}, which is not a loopback "
                f"address: set {name}=live for real payments, or {name}=sandbox to serve "
                "the sandbox (it hands out keys without payment) beyond this machine"
            )
        raw = SANDBOX
    if raw not in (SANDBOX, LIVE):
        raise ConfigError(f"{name} must be sandbox or live")
    if raw == SANDBOX:
        present = [PREFIX + n for n in LIVE_ONLY if env.get(PREFIX + n)]
        if present:
            raise ConfigError(
                f"{', '.join(present)} set, but the shop is in sandbox mode ({name} unset "
                f"on a loopback host, or {name}=sandbox): set {name}=live to use the real "
                "providers, or unset them"
            )
    return raw


def load_settings(
    *,
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    env: Mapping[str, str] | None = None,
    must_exist: bool = False,
) -> Settings:
    """Read the environment (``os.environ`` by default) and the data dir's secrets.

    The data dir is created on first use and keeps the mode it was first used in; a
    start in the other mode is a ``ConfigError`` that writes nothing. With
    ``must_exist`` (commands that only read a shop) a data dir never used is one too.
    """
    env = os.environ if env is None else env
    check_names(env)
    sandbox = _mode(env, host) == SANDBOX
    api_key = env.get(PREFIX + "NOWPAYMENTS_API_KEY", "")
    kinguin_key = env.get(PREFIX + "KINGUIN_API_KEY", "")
    database_url = _database_url(env)
    providers = _payment_providers(env, sandbox=sandbox)
    if not sandbox:
        needed = ["KINGUIN_API_KEY", "PUBLIC_URL"]
        # No provider's API key at all: NOWPayments, the default, is what is missing.
        for provider in providers or PAYMENT_PROVIDERS[:1]:
            needed += _PROVIDER_SETTINGS[provider]
        missing = [PREFIX + name for name in needed if not env.get(PREFIX + name)]
        if missing:
            raise ConfigError(f"missing required settings: {', '.join(missing)}")
    public_url = _public_url(env, host=host, port=port, sandbox=sandbox)
    smtp_url = env.get(PREFIX + "SMTP_URL") or None
    mail_dir = env.get(PREFIX + "MAIL_DIR") or None
    if not sandbox and smtp_url is None and mail_dir is None:
        raise ConfigError(
            f"{PREFIX}SMTP_URL is required in live mode: without a mail server, completion "
            f"emails would only be written as files no customer receives (set "
            f"{PREFIX}MAIL_DIR to write them to a directory on purpose)"
        )
    order_ttl = timedelta(minutes=_int(env, "ORDER_TTL_MINUTES", 60, low=1, high=7 * 24 * 60))
    key_url_ttl = timedelta(
        seconds=_int(env, "KEY_URL_TTL_SECONDS", 10800, low=1, high=7 * 24 * 3600)
    )
    tolerance = _decimal(env, "UNDERPAY_TOLERANCE_PERCENT", Decimal(0))
    job_lease = timedelta(seconds=_int(env, "JOB_LEASE_SECONDS", 120, low=1, high=24 * 3600))
    synchronous = _choice(env, "SQLITE_SYNCHRONOUS", ("FULL", "NORMAL"))
    limits = {
        name: _int(env, f"RATE_LIMIT_{name.upper()}_PER_MINUTE", 60, low=0, high=1_000_000)
        for name in ("orders", "payments", "webhook_rejects")
    }
    proxies = _proxies(env)
    s3 = _s3(env)
    vault = (env.get(PREFIX + "VAULT") or "").lower() or ("database" if database_url else None)
    from_env = {
        name: env.get(PREFIX + name.upper(), "") for name in _KEPT if name not in _SANDBOX_ONLY
    }
    # A malformed key from the environment stops the start before anything is written.
    for name in ("vault_key", "signing_key"):
        if from_env[name]:
            _key(from_env[name], name.upper())
    wanted = frozenset(
        name for name in _KEPT if not from_env.get(name) and (sandbox or name not in _SANDBOX_ONLY)
    )
    try:
        # A shop on a shared database lives there: a new host's data dir may be empty.
        never_used = not data_dir.is_dir() or data_dir_mode(data_dir) is None
        if must_exist and database_url is None and never_used:
            raise ConfigError(
                f"no shop data dir at {data_dir}: start the shop there first, or point "
                f"--data-dir (or {PREFIX}DATA_DIR) at an existing one"
            )
        # Private to the shop's user: it holds the secrets, the database and the key vault.
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        claim_data_dir(data_dir, mode_of(sandbox), how_to_switch=HOW_TO_SWITCH)
    except ModeMismatchError as exc:
        raise ConfigError(str(exc)) from None
    kept, generated = _kept_secrets(data_dir, wanted)

    def secret(name: str) -> str:
        return from_env.get(name) or kept[name]

    return Settings(
        data_dir=data_dir,
        public_url=public_url,
        sandbox=sandbox,
        nowpayments_api_key=api_key or kept.get("sandbox_nowpayments_api_key", ""),
        nowpayments_base_url=env.get(PREFIX + "NOWPAYMENTS_BASE_URL", ""),
        ipn_secret=secret("nowpayments_ipn_secret"),
        ipn_secret_previous=env.get(PREFIX + "NOWPAYMENTS_IPN_SECRET_PREVIOUS") or None,
        metrics_token=env.get(PREFIX + "METRICS_TOKEN") or None,
        kinguin_api_key=kinguin_key or kept["sandbox_kinguin_api_key"],
        kinguin_base_url=env.get(PREFIX + "KINGUIN_BASE_URL", ""),
        vault_key=_key(secret("vault_key"), "VAULT_KEY"),
        signing_key=_key(secret("signing_key"), "SIGNING_KEY"),
        admin_token=secret("admin_token"),
        smtp_url=smtp_url,
        mail_dir=Path(mail_dir) if mail_dir else None,
        kinguin_webhook_secret=env.get(PREFIX + "KINGUIN_WEBHOOK_SECRET") or None,
        order_ttl=order_ttl,
        key_url_ttl=key_url_ttl,
        underpay_tolerance_percent=tolerance,
        pay_currency=(env.get(PREFIX + "PAY_CURRENCY") or "btc").lower(),
        job_lease=job_lease,
        sqlite_synchronous=synchronous,
        s3=s3,
        database_url=database_url,
        database_pool_size=_int(env, "DATABASE_POOL_SIZE", 10, low=1, high=MAX_POOL_SIZE),
        database_timeout=timedelta(
            seconds=_int(env, "DATABASE_TIMEOUT_SECONDS", 10, low=1, high=300)
        ),
        vault=vault,
        generated=frozenset(generated),
        rate_limit_orders_per_minute=limits["orders"],
        rate_limit_payments_per_minute=limits["payments"],
        rate_limit_webhook_rejects_per_minute=limits["webhook_rejects"],
        trusted_proxies=proxies,
        payment_providers=providers,
        btcpay=_btcpay(env, kept, sandbox=sandbox) if "btcpay" in providers else None,
        sandbox_url=_sandbox_url(env, sandbox=sandbox),
        **_identity(env),
        email_template_dir=_email_template_dir(env),
    )


MAX_SHOP_NAME: Final = 100


def _email_template_dir(env: Mapping[str, str]) -> Path | None:
    """``BITLOOT_EMAIL_TEMPLATE_DIR``: an existing directory (its files are read by the shop)."""
    value = env.get(PREFIX + "EMAIL_TEMPLATE_DIR", "").strip()
    if not value:
        return None
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"{PREFIX}EMAIL_TEMPLATE_DIR {folder} is not a directory")
    return folder


def _identity(env: Mapping[str, str]) -> dict[str, str]:
    """``BITLOOT_SHOP_NAME`` and ``BITLOOT_MAIL_FROM`` (default: the name at a placeholder)."""
    name = env.get(PREFIX + "SHOP_NAME", "").strip() or "bitloot"
    if any(not c.isprintable() for c in name) or len(name) > MAX_SHOP_NAME:
        raise ConfigError(
            f"{PREFIX}SHOP_NAME must be printable text of at most {MAX_SHOP_NAME} characters"
        )
    sender = env.get(PREFIX + "MAIL_FROM", "").strip()
    if not sender:
        return {
            "shop_name": name,
            "mail_from": email.utils.formataddr((name, "keys@bitloot.invalid")),
        }
    problem = _mailbox_problem(sender)
    if problem:
        raise ConfigError(f"{PREFIX}MAIL_FROM {problem}")
    return {"shop_name": name, "mail_from": sender}


def _sandbox_url(env: Mapping[str, str], *, sandbox: bool) -> str | None:
    """``BITLOOT_SANDBOX_URL``: a shared ``bitloot sandbox``, without a trailing slash."""
    name = PREFIX + "SANDBOX_URL"
    raw = env.get(name, "")
    if not raw:
        return None
    if not sandbox:
        raise ConfigError(
            f"{name} is set, but the shop is in live mode: a live shop reaches a sandbox "
            f"only through {PREFIX}NOWPAYMENTS_BASE_URL and {PREFIX}KINGUIN_BASE_URL"
        )
    problem = _url_problem(raw)
    if problem:
        raise ConfigError(f"{name} {problem} (such as http://127.0.0.1:8100)")
    return raw.rstrip("/")


def _database_url(env: Mapping[str, str]) -> str | None:
    """``BITLOOT_DATABASE_URL`` checked, with the secrets every host must be given."""
    url = env.get(PREFIX + "DATABASE_URL") or None
    if url is None:
        return None
    if urlsplit(url).scheme not in _DATABASE_SCHEMES:
        raise ConfigError(f"{PREFIX}DATABASE_URL must be a postgresql:// URL")
    _require_shared_secrets(env)
    return url


def _require_shared_secrets(env: Mapping[str, str]) -> None:
    """On a shared database every host needs the same secrets: the environment's."""
    missing = [
        f"{PREFIX}{name} ({what})" for name, what in _SHARED_SECRETS if not env.get(PREFIX + name)
    ]
    if missing:
        raise ConfigError(
            f"{PREFIX}DATABASE_URL is set, so every host must be given the same secrets in"
            f" the environment; missing: {', '.join(missing)}"
        )

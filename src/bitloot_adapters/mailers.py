"""Mailers: SMTP (stdlib ``smtplib``) for real mail, ``.eml`` files for the embedded setup.

Both build the message with ``build_message``: multipart/alternative (text, then HTML),
and the ``Message-ID`` is the outbox's own id, unchanged, so a message sent again after
a crash carries the same id and receivers can tell it is the same message.

Rules this module keeps:

- ``send`` returns only once the message is accepted (the SMTP server answered 250 to
  DATA, or the file is in place); anything else raises.
- ``MailerUnavailable`` (retry later) for a server that is down, times out, or answers a
  transient 4xx; ``MailerError`` for a permanent 5xx refusal or a configuration fault.
- The SMTP password never appears in an exception message or a ``repr``.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import re
import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from ssl import SSLCertVerificationError, SSLContext, create_default_context
from urllib.parse import parse_qs, unquote, urlsplit

from bitloot_adapters.files import create_once
from bitloot_core.errors import MailerError, MailerUnavailable
from bitloot_core.values import OutgoingEmail

__all__ = ["FileMailer", "SmtpMailer", "build_message"]

_TRANSIENT = range(400, 500)
_TRUE = frozenset({"1", "true", "yes", "on"})
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9@._-]+")


def build_message(
    message: OutgoingEmail, *, sender: str, date: datetime | None = None
) -> EmailMessage:
    """The MIME message for ``message``: text and HTML alternatives, its own Message-ID."""
    try:
        mime = EmailMessage(policy=email.policy.SMTP)
        mime["Message-ID"] = message.message_id
        mime["Date"] = email.utils.format_datetime(date or datetime.now(UTC))
        mime["From"] = sender
        mime["To"] = message.to
        mime["Subject"] = message.subject
        mime.set_content(message.text)
        mime.add_alternative(message.html, subtype="html")
        # Serialise once here, so a header that cannot be written (a non-ASCII Message-ID)
        # fails now as a permanent error, not halfway through an SMTP exchange.
        mime.as_bytes()
    except (ValueError, TypeError) as exc:
        # A line break in a header, an unparsable address, a non-ASCII Message-ID:
        # sending again cannot help.
        raise MailerError(f"the message cannot be built: {type(exc).__name__}") from exc
    return mime


class SmtpMailer:
    """Sends through an SMTP server; plain, STARTTLS (``starttls``) or implicit TLS (``ssl``).

    ``ssl_context`` defaults to the system's trust store with hostname checking.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        ssl: bool = False,
        sender: str,
        timeout: float = 10,
        ssl_context: SSLContext | None = None,
    ) -> None:
        if starttls and ssl:
            raise ValueError("choose STARTTLS or implicit TLS, not both")
        if password is not None and username is None:
            raise ValueError("a password needs a username")
        # smtplib encodes AUTH as ASCII; a non-ASCII password could never log in.
        if not (username or "").isascii() or not (password or "").isascii():
            raise ValueError("the SMTP username and password must be ASCII")
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.starttls = starttls
        self.ssl = ssl
        self.sender = sender
        self.timeout = timeout
        self._ssl_context = ssl_context

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        sender: str,
        timeout: float = 10,
        ssl_context: SSLContext | None = None,
    ) -> SmtpMailer:
        """``smtp://user:pass@host:port`` (``?starttls=1`` to upgrade) or ``smtps://…``.

        User and password are percent-decoded. The default port is 25 (587 with STARTTLS)
        for ``smtp`` and 465 for ``smtps``.
        """
        # Errors below never quote the URL: it may hold the password.
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ValueError("the SMTP URL is malformed") from None
        if parts.scheme not in {"smtp", "smtps"}:
            raise ValueError("an SMTP URL starts with smtp:// or smtps://")
        if not parts.hostname:
            raise ValueError("the SMTP URL names no host")
        query = parse_qs(parts.query)
        starttls = any(v.lower() in _TRUE for v in query.get("starttls", []))
        implicit_tls = parts.scheme == "smtps"
        if starttls and implicit_tls:
            raise ValueError("smtps:// is implicit TLS; starttls does not apply")
        if port is None:
            port = 465 if implicit_tls else 587 if starttls else 25
        return cls(
            parts.hostname,
            port,
            username=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
            starttls=starttls,
            ssl=implicit_tls,
            sender=sender,
            timeout=timeout,
            ssl_context=ssl_context,
        )

    def __repr__(self) -> str:
        tls = "ssl" if self.ssl else "starttls" if self.starttls else "plain"
        return (
            f"SmtpMailer(host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"tls={tls!r}, sender={self.sender!r})"
        )

    def send(self, message: OutgoingEmail) -> None:
        """Return once the server accepted ``message``; raise otherwise."""
        mime = build_message(message, sender=self.sender)
        try:
            smtp = self._connect()
            try:
                self._deliver(smtp, mime)
            finally:
                _hang_up(smtp)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            error = MailerUnavailable if all(c in _TRANSIENT for c in codes) else MailerError
            raise error(f"the SMTP server refused the recipient ({codes[0]})") from exc
        except smtplib.SMTPResponseException as exc:
            raise self._refusal(exc.smtp_code, exc.smtp_error) from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise MailerUnavailable("the SMTP server closed the connection") from exc
        except smtplib.SMTPException as exc:
            # No STARTTLS or AUTH where the settings need it: an admin must look.
            raise MailerError(f"the SMTP exchange failed: {exc}") from exc
        except SSLCertVerificationError as exc:
            raise MailerError("the SMTP server's TLS certificate was not trusted") from exc
        except OSError as exc:
            # Refused connections, timeouts, TLS handshake failures, name resolution.
            raise MailerUnavailable(
                f"the SMTP server {self.host}:{self.port} is unreachable ({type(exc).__name__})"
            ) from exc

    def _connect(self) -> smtplib.SMTP:
        if self.ssl:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._tls_context()
            )
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)

    def _tls_context(self) -> SSLContext:
        return self._ssl_context or create_default_context()

    def _deliver(self, smtp: smtplib.SMTP, mime: EmailMessage) -> None:
        if self.starttls:
            smtp.starttls(context=self._tls_context())
        if self.username is not None:
            smtp.login(self.username, self._password or "")
        # With one recipient, a refusal raises; an empty dict means it was accepted.
        smtp.send_message(mime)

    def _refusal(self, code: int, reply: bytes | str) -> MailerError:
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        if self._password:
            text = text.replace(self._password, "***")
        error = MailerUnavailable if code in _TRANSIENT else MailerError
        return error(f"the SMTP server answered {code}: {text}", smtp_code=code)


def _hang_up(smtp: smtplib.SMTP) -> None:
    # QUIT after an accepted message must not turn success into a retry (and a duplicate).
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


class FileMailer:
    """Writes each message as one ``.eml`` file in ``directory`` (the embedded default).

    The file name comes from the Message-ID, so sending the same message again finds
    the file already there and writes nothing. Files are ``0o600``: a message holds the
    order's access link.
    """

    def __init__(self, directory: Path, *, sender: str) -> None:
        self.directory = Path(directory)
        self.sender = sender

    def __repr__(self) -> str:
        return f"FileMailer(directory={str(self.directory)!r}, sender={self.sender!r})"

    def path_for(self, message_id: str) -> Path:
        """A safe, unique file name: the readable part of the id plus a hash of all of it."""
        readable = _UNSAFE_NAME_CHARS.sub("_", message_id.strip("<>")).lstrip(".")[:80]
        digest = hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return self.directory / f"{readable}-{digest}.eml"

    def send(self, message: OutgoingEmail) -> None:
        path = self.path_for(message.message_id)
        if path.exists():
            return
        data = build_message(message, sender=self.sender).as_bytes()
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            create_once(path, data)  # the same Message-ID never makes a second file
        except OSError as exc:
            raise MailerUnavailable("the message could not be written") from exc

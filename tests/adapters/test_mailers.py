"""The SMTP mailer against a real aiosmtpd server on loopback, and the file mailer."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import ipaddress
import os
import socket
import ssl
import stat
import threading
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bitloot_adapters.mailers import FileMailer, SmtpMailer, build_message
from bitloot_core.errors import MailerError, MailerUnavailable
from bitloot_core.values import OutgoingEmail

SENDER = "Bitloot Shop <keys@shop.example>"
LINK = "https://shop.example/order/o-123?token=abc"
USERNAME = "mailer@shop.example"
# Characters that need percent-encoding in a URL's userinfo (smtplib logs in with ASCII).
PASSWORD = "p@ss:w/rd%?#&= '+"
PASSWORD_IN_URL = "p%40ss%3Aw%2Frd%25%3F%23%26%3D%20%27%2B"


def outgoing(message_id: str = "<order-o-123-completion_email@shop.example>") -> OutgoingEmail:
    return OutgoingEmail(
        message_id=message_id,
        to="buyer@customer.example",
        subject="Your Bitloot Shop keys (order o-123)",
        text=f"Thank you for your order.\n\nView keys: {LINK}",
        html=f'<p>Thank you for your order.</p><p><a href="{LINK}">View keys</a></p>',
    )


# --- a recording SMTP server ------------------------------------------------------------------


class RecordingHandler:
    """Keeps every accepted message; ``replies`` makes a command answer something else."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.replies: dict[str, str] = {}
        self.logins: list[tuple[bytes, bytes]] = []
        self.drop_on_quit = False

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if "MAIL" in self.replies:
            return self.replies["MAIL"]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if "RCPT" in self.replies:
            return self.replies["RCPT"]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if "DATA" in self.replies:
            return self.replies["DATA"]
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, server, session, envelope):
        if self.drop_on_quit:
            # The message was accepted; the connection dies before QUIT is answered.
            server.transport.abort()
        return "221 Bye"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login, auth_data.password))
        ok = auth_data.login == USERNAME.encode() and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)

    def parsed(self, index: int = -1) -> EmailMessage:
        message = email.message_from_bytes(self.messages[index][2], policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


def start_smtp(handler, port, **kwargs):
    # Port 0 cannot be used: the controller checks readiness by connecting to its port
    # before reading the real one back, so a free port is chosen first.
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller


def stop_smtp(controller):
    controller.stop()
    if not controller.loop.is_closed():
        controller.loop.close()


@pytest.fixture
def handler():
    return RecordingHandler()


@pytest.fixture
def smtp_server(handler, loopback_port):
    controller = start_smtp(
        handler,
        loopback_port,
        authenticator=handler.authenticate,
        auth_require_tls=False,
    )
    yield controller
    stop_smtp(controller)


@pytest.fixture
def mailer(smtp_server):
    return SmtpMailer("127.0.0.1", smtp_server.port, sender=SENDER, timeout=5)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bitloot test SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def server_tls(tls_files):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    return context


@pytest.fixture
def client_tls(tls_files):
    return ssl.create_default_context(cafile=str(tls_files[0]))


class OneLineServer:
    """A TCP server that writes one line (or nothing) to each client, then hangs up."""

    def __init__(self, line: bytes | None, *, hold: float = 0) -> None:
        self.line = line
        self.hold = hold
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            if self.line is not None:
                connection.sendall(self.line)
            self.done.wait(self.hold)

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        self.listener.close()


# --- SMTP: delivery ---------------------------------------------------------------------------


def test_the_message_arrives_whole(mailer, handler):
    mailer.send(outgoing())

    mail_from, rcpt_tos, _ = handler.messages[0]
    assert mail_from == "keys@shop.example"
    assert rcpt_tos == ["buyer@customer.example"]
    message = handler.parsed()
    assert message["Message-ID"] == "<order-o-123-completion_email@shop.example>"
    assert message["From"] == SENDER
    assert message["To"] == "buyer@customer.example"
    assert message["Subject"] == "Your Bitloot Shop keys (order o-123)"
    sent_at = parsedate_to_datetime(message["Date"])
    assert abs(sent_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    assert LINK in text.get_content()
    assert f'<a href="{LINK}">View keys</a>' in html.get_content()


def test_a_message_sent_again_keeps_its_message_id(mailer, handler):
    mailer.send(outgoing())
    mailer.send(outgoing())
    ids = [handler.parsed(i)["Message-ID"] for i in range(2)]
    assert ids == ["<order-o-123-completion_email@shop.example>"] * 2


def test_non_ascii_content_arrives_intact(mailer, handler):
    message = OutgoingEmail(
        message_id="<order-1@shop.example>",
        to="buyer@customer.example",
        subject="Vos clés — commande n°1",
        text="Merci ! Clé : ÄÖÜ",
        html="<p>Merci ! Clé : ÄÖÜ</p>",
    )
    mailer.send(message)
    received = handler.parsed()
    assert received["Subject"] == "Vos clés — commande n°1"
    body = received.get_body(("plain",))
    assert body is not None
    assert "Clé : ÄÖÜ" in body.get_content()


def test_a_connection_lost_after_acceptance_is_still_a_success(mailer, handler):
    handler.drop_on_quit = True
    mailer.send(outgoing())
    assert len(handler.messages) == 1


# --- SMTP: failures ---------------------------------------------------------------------------


def test_a_server_that_is_down_is_unavailable(loopback_port):
    mailer = SmtpMailer("127.0.0.1", loopback_port, sender=SENDER, timeout=2)
    with pytest.raises(MailerUnavailable, match="unreachable") as caught:
        mailer.send(outgoing())
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


@pytest.mark.parametrize(
    ("command", "reply", "error", "retryable"),
    [
        ("DATA", "550 5.7.1 Message rejected as spam", MailerError, False),
        ("DATA", "451 4.3.0 Try again later", MailerUnavailable, True),
        ("DATA", "552 5.3.4 Message too big", MailerError, False),
        ("RCPT", "550 5.1.1 No such user", MailerError, False),
        ("RCPT", "450 4.2.1 Mailbox busy", MailerUnavailable, True),
        ("MAIL", "553 5.7.1 Sender not allowed", MailerError, False),
        ("MAIL", "421 4.7.0 Too many connections", MailerUnavailable, True),
    ],
)
def test_server_refusals(mailer, handler, command, reply, error, retryable):
    handler.replies[command] = reply
    with pytest.raises(MailerError) as caught:
        mailer.send(outgoing())
    assert type(caught.value) is error
    assert caught.value.retryable is retryable
    assert reply[:3] in str(caught.value)
    assert handler.messages == []


@pytest.mark.parametrize(
    ("greeting", "error"),
    [(b"421 busy, come back later\r\n", MailerUnavailable), (b"554 no service\r\n", MailerError)],
)
def test_a_refusing_greeting(greeting, error):
    server = OneLineServer(greeting)
    try:
        with pytest.raises(MailerError) as caught:
            SmtpMailer("127.0.0.1", server.port, sender=SENDER, timeout=2).send(outgoing())
    finally:
        server.close()
    assert type(caught.value) is error


def test_a_server_that_hangs_up_is_unavailable():
    server = OneLineServer(None)
    try:
        with pytest.raises(MailerUnavailable, match="closed the connection"):
            SmtpMailer("127.0.0.1", server.port, sender=SENDER, timeout=2).send(outgoing())
    finally:
        server.close()


def test_a_server_that_never_answers_times_out():
    server = OneLineServer(None, hold=5)
    try:
        with pytest.raises(MailerUnavailable) as caught:
            SmtpMailer("127.0.0.1", server.port, sender=SENDER, timeout=0.3).send(outgoing())
    finally:
        server.close()
    # smtplib reports a read timeout as a lost connection.
    assert "timed out" in str(caught.value.__cause__)


def test_a_non_ascii_message_id_is_refused_before_sending(mailer, handler, tmp_path):
    message = dataclasses.replace(outgoing(), message_id="<order-é@shop.example>")
    with pytest.raises(MailerError, match="cannot be built") as caught:
        mailer.send(message)
    assert not caught.value.retryable
    with pytest.raises(MailerError, match="cannot be built"):
        FileMailer(tmp_path, sender=SENDER).send(message)
    assert handler.messages == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "field", ["subject", "to", "message_id"], ids=["subject", "to", "message-id"]
)
def test_a_header_with_a_line_break_is_refused_before_sending(mailer, handler, field):
    fields = {
        "message_id": "<id@shop.example>",
        "to": "buyer@customer.example",
        "subject": "keys",
        field: "x@example.com\r\nBcc: attacker@evil.example",
    }
    message = OutgoingEmail(text="t", html="<p>h</p>", **fields)
    with pytest.raises(MailerError, match="cannot be built") as caught:
        mailer.send(message)
    assert not caught.value.retryable
    assert handler.messages == []


# --- SMTP: authentication and TLS -----------------------------------------------------------------


def test_login_with_a_percent_encoded_password_from_a_url(smtp_server, handler):
    url = f"smtp://mailer%40shop.example:{PASSWORD_IN_URL}@127.0.0.1:{smtp_server.port}"
    SmtpMailer.from_url(url, sender=SENDER).send(outgoing())
    assert handler.logins == [(USERNAME.encode(), PASSWORD.encode())]
    assert len(handler.messages) == 1


def test_a_wrong_password_is_refused_without_leaking_it(smtp_server, handler):
    wrong = "not-the-password-%s" % PASSWORD  # noqa: UP031 - contains '%'
    mailer = SmtpMailer(
        "127.0.0.1", smtp_server.port, username=USERNAME, password=wrong, sender=SENDER
    )
    with pytest.raises(MailerError) as caught:
        mailer.send(outgoing())
    error = caught.value
    assert type(error) is MailerError
    assert error.data["smtp_code"] == 535
    chain = [error, error.__cause__]
    for text in [str(e) for e in chain] + [repr(e) for e in chain] + [repr(mailer)]:
        assert wrong not in text
        assert PASSWORD not in text
    assert handler.messages == []


def test_a_server_echoing_the_password_is_scrubbed(handler, smtp_server):
    handler.replies["MAIL"] = f"550 5.7.1 bad credentials {PASSWORD}"
    mailer = SmtpMailer(
        "127.0.0.1", smtp_server.port, username=USERNAME, password=PASSWORD, sender=SENDER
    )
    with pytest.raises(MailerError) as caught:
        mailer.send(outgoing())
    assert PASSWORD not in str(caught.value)
    assert "***" in str(caught.value)


def test_starttls_then_login(handler, loopback_port, server_tls, client_tls):
    controller = start_smtp(
        handler,
        loopback_port,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=handler.authenticate,
    )
    try:
        url = f"smtp://mailer%40shop.example:{PASSWORD_IN_URL}@127.0.0.1:{loopback_port}"
        mailer = SmtpMailer.from_url(f"{url}?starttls=1", sender=SENDER, ssl_context=client_tls)
        mailer.send(outgoing())
    finally:
        stop_smtp(controller)
    assert handler.logins == [(USERNAME.encode(), PASSWORD.encode())]
    assert handler.parsed()["Message-ID"] == outgoing().message_id


def test_implicit_tls_then_login(handler, loopback_port, server_tls, client_tls):
    # aiosmtpd only counts STARTTLS as TLS for AUTH; this connection is TLS from the start.
    controller = start_smtp(
        handler,
        loopback_port,
        ssl_context=server_tls,
        authenticator=handler.authenticate,
        auth_require_tls=False,
    )
    try:
        url = f"smtps://mailer%40shop.example:{PASSWORD_IN_URL}@127.0.0.1:{loopback_port}"
        SmtpMailer.from_url(url, sender=SENDER, ssl_context=client_tls).send(outgoing())
    finally:
        stop_smtp(controller)
    assert handler.logins == [(USERNAME.encode(), PASSWORD.encode())]
    assert len(handler.messages) == 1


def test_an_untrusted_certificate_is_a_configuration_error(handler, loopback_port, server_tls):
    controller = start_smtp(handler, loopback_port, tls_context=server_tls)
    try:
        mailer = SmtpMailer("127.0.0.1", loopback_port, starttls=True, sender=SENDER)
        with pytest.raises(MailerError, match="not trusted") as caught:
            mailer.send(outgoing())
    finally:
        stop_smtp(controller)
    assert not caught.value.retryable
    assert handler.messages == []


def test_starttls_on_a_server_without_it_is_a_configuration_error(smtp_server, handler):
    mailer = SmtpMailer("127.0.0.1", smtp_server.port, starttls=True, sender=SENDER)
    with pytest.raises(MailerError, match="STARTTLS") as caught:
        mailer.send(outgoing())
    assert not caught.value.retryable
    assert handler.messages == []


# --- SMTP: settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example", ("mail.example", 25, None, None, False, False)),
        ("smtp://u:p@mail.example:2525", ("mail.example", 2525, "u", "p", False, False)),
        (
            f"smtp://mailer%40shop.example:{PASSWORD_IN_URL}@mail.example?starttls=1",
            ("mail.example", 587, USERNAME, PASSWORD, True, False),
        ),
        ("smtp://mail.example:2587?starttls=true", ("mail.example", 2587, None, None, True, False)),
        ("smtp://mail.example?starttls=0", ("mail.example", 25, None, None, False, False)),
        ("smtps://u:@mail.example", ("mail.example", 465, "u", "", False, True)),
        ("smtps://u@mail.example:4650", ("mail.example", 4650, "u", None, False, True)),
    ],
)
def test_from_url(url, expected):
    mailer = SmtpMailer.from_url(url, sender=SENDER, timeout=3)
    host, port, username, password, starttls, implicit_tls = expected
    assert (mailer.host, mailer.port, mailer.username) == (host, port, username)
    assert mailer._password == password
    assert (mailer.starttls, mailer.ssl) == (starttls, implicit_tls)
    assert (mailer.sender, mailer.timeout) == (SENDER, 3)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("http://user:s3cr3t@mail.example", "smtp:// or smtps://"),
        ("smtp://user:s3cr3t@mail.example:99999", "malformed"),
        ("smtp://user:s3cr3t@mail.example:port", "malformed"),
        ("smtp://user:s3cr3t@:25", "no host"),
        ("smtps://user:s3cr3t@mail.example?starttls=1", "implicit TLS"),
    ],
)
def test_bad_urls_are_refused_without_quoting_them(url, match):
    with pytest.raises(ValueError, match=match) as caught:
        SmtpMailer.from_url(url, sender=SENDER)
    assert "s3cr3t" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_settings_are_checked():
    with pytest.raises(ValueError, match="not both"):
        SmtpMailer("h", 25, starttls=True, ssl=True, sender=SENDER)
    with pytest.raises(ValueError, match="needs a username"):
        SmtpMailer("h", 25, password="secret", sender=SENDER)
    with pytest.raises(ValueError, match="must be ASCII") as caught:
        SmtpMailer("h", 25, username="u", password="sécret", sender=SENDER)
    assert "sécret" not in str(caught.value)
    with pytest.raises(ValueError, match="must be ASCII"):
        SmtpMailer.from_url("smtp://%C3%BC:p@h", sender=SENDER)


def test_the_repr_hides_the_password():
    mailer = SmtpMailer.from_url(f"smtps://u:{PASSWORD_IN_URL}@mail.example", sender=SENDER)
    assert repr(mailer) == (
        "SmtpMailer(host='mail.example', port=465, username='u', tls='ssl', "
        "sender='Bitloot Shop <keys@shop.example>')"
    )
    assert "starttls" in repr(SmtpMailer("h", 25, starttls=True, sender=SENDER))
    assert "plain" in repr(SmtpMailer("h", 25, sender=SENDER))


# --- the shared message builder -----------------------------------------------------------------


def test_build_message_uses_the_given_date():
    date = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    message = build_message(outgoing(), sender=SENDER, date=date)
    assert message["Date"] == "Fri, 02 Jan 2026 03:04:05 +0000"
    assert message["Message-ID"] == outgoing().message_id
    assert b"\r\n" in message.as_bytes()


# --- the file mailer ------------------------------------------------------------------------------


@pytest.fixture
def outbox(tmp_path):
    return tmp_path / "outbox"


def eml_files(directory):
    return sorted(directory.iterdir())


def test_the_file_mailer_writes_one_parseable_eml(outbox):
    FileMailer(outbox, sender=SENDER).send(outgoing())

    [path] = eml_files(outbox)
    assert path.suffix == ".eml"
    assert path.name.startswith("order-o-123-completion_email@shop.example-")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Message-ID"] == outgoing().message_id
    assert message["From"] == SENDER
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    assert text is not None
    assert LINK in text.get_content()


def test_the_file_mailer_is_idempotent_per_message_id(outbox):
    mailer = FileMailer(outbox, sender=SENDER)
    mailer.send(outgoing())
    first = eml_files(outbox)[0].read_bytes()
    changed = dataclasses.replace(outgoing(), subject="changed")
    mailer.send(changed)
    mailer.send(outgoing("<order-o-456-completion_email@shop.example>"))

    files = eml_files(outbox)
    assert len(files) == 2
    assert mailer.path_for(outgoing().message_id).read_bytes() == first


@pytest.mark.parametrize(
    "message_id",
    [
        "<../../escape@x>",
        "</etc/passwd>",
        "<..>",
        "<a/b\\c:d*e?f@x>",
        "<.hidden@x>",
        "<" + "x" * 500 + ">",
    ],
)
def test_file_names_are_safe(outbox, message_id):
    mailer = FileMailer(outbox, sender=SENDER)
    mailer.send(outgoing(message_id))
    [path] = eml_files(outbox)
    assert path.parent == outbox
    assert not path.name.startswith(".")
    assert len(path.name) < 120
    assert path == mailer.path_for(message_id)


def test_similar_message_ids_get_distinct_files(outbox):
    mailer = FileMailer(outbox, sender=SENDER)
    mailer.send(outgoing("<a/b@x>"))
    mailer.send(outgoing("<a:b@x>"))
    assert len(eml_files(outbox)) == 2


def test_eml_files_are_private_and_no_temp_file_is_left(outbox):
    old_umask = os.umask(0)
    try:
        FileMailer(outbox, sender=SENDER).send(outgoing())
    finally:
        os.umask(old_umask)
    [path] = eml_files(outbox)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700


def test_an_unwritable_outbox_is_unavailable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MailerUnavailable, match="could not be written"):
        FileMailer(blocker, sender=SENDER).send(outgoing())


def test_the_file_mailer_repr():
    assert (
        repr(FileMailer(os.devnull, sender="a@b"))
        == f"FileMailer(directory='{os.devnull}', sender='a@b')"
    )

"""One completion email per order, counted in what was delivered, not in file names.

``FileMailer`` names its files after the Message-ID, so a second send of the same email
writes nothing and a count of files would hide it. Here the mailer writes every message
it is handed to a file of its own (a fresh name each time, as an SMTP server would keep
each delivery), and the mail directory's contents are counted by Message-ID and by the
order id in the subject.

The purchase goes through everything that could send again: duplicated IPNs, two
``Checkout`` instances on one SQLite file running worker passes, a transient mailer
failure and its retry, a refused admin resend, and the worst interleaving the outbox
must survive: a worker paused right after the mail server accepted the message and the
send was recorded, its lease running out, and another worker taking the job.
"""

from __future__ import annotations

import email
import email.policy
import uuid
from collections import Counter
from datetime import timedelta
from email.message import Message
from pathlib import Path

import pytest
from realkit import SENDER, RealKit, real_kit

from bitloot_adapters.mailers import FileMailer
from bitloot_adapters.sqlite_store import SqliteStore
from bitloot_core.chart import OrderStatus
from bitloot_core.errors import InvalidState, MailerUnavailable
from bitloot_core.values import OutgoingEmail


class EveryDeliveryMailer(FileMailer):
    """Writes each message it is handed to a new file: it never dedupes by name."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, sender=SENDER)
        self.fail_next = 0

    def path_for(self, message_id: str) -> Path:
        return self.directory / f"delivery-{uuid.uuid4().hex}.eml"

    def send(self, message: OutgoingEmail) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise MailerUnavailable("the mail server is busy")
        super().send(message)


class PauseAfterSend:
    """An observer that, once, stands for the first worker pausing right after the send
    was recorded: the clock passes its lease and a second worker runs its pass."""

    def __init__(self) -> None:
        self.kit: RealKit | None = None
        self.second_worker_runs: list[str] = []
        self._paused = False

    def observe(self, event: str, /, **fields: object) -> None:
        if event != "email_sent" or self._paused or self.kit is None:
            return
        self._paused = True
        kit = self.kit
        kit.clock.advance(kit.config.job_lease + timedelta(seconds=1))
        with SqliteStore(kit.db_path) as store:
            other = kit.new_checkout(store)
            self.second_worker_runs += [run.outcome for run in other.run_due_jobs()]


def delivered(mail_dir: Path) -> list[Message]:
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted(mail_dir.glob("*"))
    ]


def test_each_order_gets_exactly_one_completion_email(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    mailer = EveryDeliveryMailer(data_dir / "mail")
    pause = PauseAfterSend()
    with real_kit(data_dir, mailer=mailer, observer=pause) as kit:
        first, payment = kit.buy([("stardew-valley", 1)])
        kit.pay(payment, duplicate=True)
        pause.kit = kit
        kit.run_until_idle()
        assert pause.second_worker_runs == ["done"]  # it took the job and found it sent
        assert kit.statuses(first)[0] is OrderStatus.FULFILLED

        second, payment = kit.buy([("counter-strike-source", 1), ("gift-card-10", 1)])
        kit.pay(payment, duplicate=True)
        mailer.fail_next = 1
        kit.run_until_idle()
        kit.clock.advance(timedelta(minutes=5))
        with SqliteStore(kit.db_path) as store:
            other = kit.new_checkout(store)
            for _ in range(3):
                other.run_due_jobs()
                kit.run_until_idle()
                kit.clock.advance(timedelta(minutes=5))
        kit.pay(payment, duplicate=True)  # the provider sends its IPNs again, late
        kit.run_until_idle()
        assert kit.statuses(second)[0] is OrderStatus.FULFILLED
        with pytest.raises(InvalidState):
            kit.checkout.resend_email(second.order.id, actor="admin")
        kit.run_until_idle()

        messages = delivered(kit.mail_dir)
        by_id = Counter(str(m["Message-ID"]) for m in messages)
        by_order = Counter(
            order_id
            for m in messages
            for order_id in (first.order.id, second.order.id)
            if order_id in str(m["Subject"])
        )
    assert len(by_id) == 2, sorted(by_id)
    assert sorted(by_id.values()) == [1, 1], by_id
    assert by_order == {first.order.id: 1, second.order.id: 1}

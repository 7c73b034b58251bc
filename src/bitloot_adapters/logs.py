"""Structured JSON logs with structlog, and the ``Observer`` that feeds them.

Never a key, token or secret in a log line: fields whose names suggest a secret are
replaced by ``"[redacted]"`` before rendering, and the service only passes ids, statuses
and error codes to the observer in the first place.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from bitloot_core.ports import Observer

_SECRET_NAMES = re.compile(
    r"(secret|token|password|passwd|api[_-]?key|signature|sig|authorization|cookie|serial|vault[_-]?key)",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def redact_secrets(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: blank every field whose name looks like a secret."""
    del logger, method_name
    for name in list(event_dict):
        if name != "event" and _SECRET_NAMES.search(name):
            event_dict[name] = REDACTED
    return event_dict


def configure_logging(*, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """JSON lines on ``stream`` (stderr by default), with time, level and redaction."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


class LogObserver:
    """Writes each service event as one structured log line (order/payment ids bound)."""

    def __init__(self, logger: structlog.typing.FilteringBoundLogger | None = None) -> None:
        self._log = logger or structlog.get_logger("bitloot")

    def observe(self, event: str, /, **fields: object) -> None:
        level = "warning" if event in {"job_failed", "reconcile_failed"} else "info"
        getattr(self._log, level)(event, **fields)


class FanOut:
    """Sends each event to several observers (logs and metrics)."""

    def __init__(self, *observers: Observer) -> None:
        self._observers = observers

    def observe(self, event: str, /, **fields: object) -> None:
        for observer in self._observers:
            observer.observe(event, **fields)

"""The control panel of a sandbox running as its own process (``bitloot sandbox``).

A sandbox-mode shop started with ``BITLOOT_SANDBOX_URL`` uses that sandbox instead of
starting its own: its ``/sandbox/...`` routes are relayed there, so paying from the
shop's page or its tests works the same. Moving the clock moves the shop's clock and the
sandbox's, then runs the shop's worker once, as in a sandbox of its own.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import httpx

from bitloot_core.errors import BitlootError, Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from bitloot_adapters.sandbox.controls import AdjustableClock
    from bitloot_adapters.worker import Worker

__all__ = ["RemoteSandbox", "SandboxUnreachable"]


class SandboxUnreachable(BitlootError):
    code = "sandbox_unreachable"
    status_hint = 502


_RELAYED: dict[int, type[BitlootError]] = {400: InvalidInput, 404: NotFound, 409: Conflict}


class RemoteSandbox:
    def __init__(
        self, base_url: str, *, http: httpx.Client, clock: AdjustableClock, worker: Worker
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self._http = http
        self._worker = worker

    def _call(self, method: str, path: str, body: object = None, **query: str) -> Any:
        try:
            response = self._http.request(
                method, f"{self.base_url}{path}", json=body, params=query or None, timeout=60
            )
        except httpx.HTTPError as exc:
            raise SandboxUnreachable(
                f"the sandbox at {self.base_url} did not answer ({type(exc).__name__})"
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code >= 400:  # noqa: PLR2004 - HTTP's error statuses
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            kind = _RELAYED.get(response.status_code, SandboxUnreachable)
            raise kind(
                str(error.get("message") or f"the sandbox answered {response.status_code}"),
                code=str(error.get("code") or kind.code),
            )
        return answer

    def pay(
        self, payment_id: str, amount: Decimal | None, *, wait: bool = True
    ) -> dict[str, object]:
        body = {} if amount is None else {"amount": str(amount)}
        path = f"/sandbox/payments/{payment_id}/pay"
        return dict(self._call("POST", path, body, wait="1" if wait else "0"))

    def send(
        self, payment_id: str, action: Literal["fail", "expire"], *, wait: bool = True
    ) -> dict[str, object]:
        path = f"/sandbox/payments/{payment_id}/{action}"
        return dict(self._call("POST", path, None, wait="1" if wait else "0"))

    def advance_clock(self, seconds: Decimal, *, wait: bool = True) -> dict[str, object]:
        """Move both clocks, then run one pass of the shop's worker, sweeper forced."""
        path = "/sandbox/clock/advance"
        self._call("POST", path, {"seconds": str(seconds)}, wait="1" if wait else "0")
        now = self.clock.advance(timedelta(seconds=float(seconds)))
        done = self._worker.run_once(force_sweep=True)
        return {
            "now": now,
            "swept": done.swept,
            "jobs": [{"key": r.key, "outcome": r.outcome} for r in done.jobs],
        }

    def kinguin_outage(self, failures: int) -> dict[str, object]:
        return dict(self._call("POST", "/sandbox/kinguin/outage", {"failures": failures}))

    def kinguin_key_delay(self, seconds: Decimal) -> dict[str, object]:
        return dict(self._call("POST", "/sandbox/kinguin/key-delay", {"seconds": str(seconds)}))

    def kinguin_latency(self, seconds: Decimal) -> dict[str, object]:
        return dict(self._call("POST", "/sandbox/kinguin/latency", {"seconds": str(seconds)}))

    def kinguin_orders(self) -> list[dict[str, object]]:
        return list(self._call("GET", "/sandbox/kinguin/orders"))

    def kinguin_stock(self, product_id: str, qty: int) -> dict[str, object]:
        body = {"product_id": product_id, "qty": qty}
        return dict(self._call("POST", "/sandbox/kinguin/stock", body))

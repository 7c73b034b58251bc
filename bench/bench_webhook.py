"""Webhook endpoint throughput under concurrent load, against the same server's empty POST.

A FastAPI example server (sandbox mode, SQLite in a temp dir, no worker thread) runs in
a child process with one extra route, ``POST /bench/empty``, that reads the body and
answers 200. A load generator in this process keeps 64 requests in flight, first against
the empty route (the baseline), then against ``/webhooks/nowpayments`` with genuine
signed IPNs (each order's waiting → confirming → confirmed → sending → finished, so every
IPN is verified, deduped, applied by compare-and-set and, for ``finished``, enqueues
fulfillment). Prints requests/s of both, the ratio (target >= 0.6) and p50/p99 latency.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 64

SERVER = r"""
import json, sys, hmac, hashlib
from pathlib import Path
import uvicorn
from fastapi import Request, Response
sys.path.insert(0, sys.argv[4])
from support.servers import load_example
from bitloot_adapters.bootstrap import build_shop
from bitloot_adapters.logs import configure_logging
from bitloot_adapters.settings import load_settings
from bitloot_core.ipn import canonical_json
import logging

configure_logging(level=logging.WARNING)
data, port, orders = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
shop = build_shop(load_settings(data_dir=data, port=port, env={}))
secret = shop.settings.ipn_secret.encode()
ipns = []
for n in range(orders):
    created = shop.checkout.create_order(email=f"b{n}@example.com", items=[("stardew-valley", 1)])
    payment = shop.checkout.open_payment(created.order.id, created.access_token).payment
    for status in ("waiting", "confirming", "confirmed", "sending", "finished"):
        body = json.loads(shop.sandbox.payments.ipn_body(payment.id))
        body["payment_status"] = status
        raw = canonical_json(body).encode()
        ipns.append([raw.decode(), hmac.new(secret, raw, hashlib.sha512).hexdigest()])
(data / "ipns.json").write_text(json.dumps(ipns))
app = load_example("fastapi_server").create_app(shop)

async def empty(request: Request) -> Response:
    await request.body()
    return Response(b'{"ok":true}', media_type="application/json")

app.add_api_route("/bench/empty", empty, methods=["POST"])
(data / "ready").write_text("1")
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""


async def _load(
    url: str, requests: list[tuple[bytes, dict[str, str]]]
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = iter(requests)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker() -> None:
            for body, headers in queue:
                started = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return len(requests) / elapsed, sorted(latencies)


def _percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(len(values) * fraction))] * 1000


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(*, quick: bool = False) -> list[tuple[str, float, str]]:
    orders = 200 if quick else 1000
    with tempfile.TemporaryDirectory() as tmp:
        data, port = Path(tmp), _free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", SERVER, str(data), str(port), str(orders), str(ROOT / "tests")],
            env=env,
        )
        try:
            while not (data / "ready").exists():
                if child.poll() is not None:
                    raise RuntimeError("the bench server failed to start")
                time.sleep(0.1)
            time.sleep(0.5)
            ipns = [
                (raw.encode(), {"x-nowpayments-sig": sig, "content-type": "application/json"})
                for raw, sig in json.loads((data / "ipns.json").read_text())
            ]
            base = f"http://127.0.0.1:{port}"
            empty = [(raw, {"content-type": "application/json"}) for raw, _ in ipns]
            asyncio.run(_load(f"{base}/bench/empty", empty[:200]))  # warm up
            empty_rps, empty_lat = asyncio.run(_load(f"{base}/bench/empty", empty))
            ipn_rps, ipn_lat = asyncio.run(_load(f"{base}/webhooks/nowpayments", ipns))
        finally:
            child.terminate()
            child.wait(10)
    ratio = ipn_rps / empty_rps
    print(
        f"webhook.empty-route     {empty_rps:8.0f} req/s  p50 {_percentile(empty_lat, 0.5):6.1f} ms"
        f"  p99 {_percentile(empty_lat, 0.99):6.1f} ms  ({CONCURRENCY} clients)"
    )
    print(
        f"webhook.ipn             {ipn_rps:8.0f} req/s  p50 {_percentile(ipn_lat, 0.5):6.1f} ms"
        f"  p99 {_percentile(ipn_lat, 0.99):6.1f} ms  ({len(ipns)} signed IPNs)"
    )
    print(f"webhook.ipn ratio       {ratio:8.2f}x the empty route (target >= 0.6)")
    return [("webhook.ratio", ratio, ">= 0.6")]


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)

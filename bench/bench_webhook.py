"""Webhook endpoint throughput under concurrent load, against the same server's empty POST.

A FastAPI example server (sandbox mode, SQLite in a temp dir, no worker thread) runs in
a child process with one extra route, ``POST /bench/empty``, served like every other
route (FastAPI endpoint, thread pool, ``ShopApi`` dispatch, metrics) but doing nothing.
A load generator in this process keeps 64 requests in flight, first against the empty
route (the baseline), then against ``/webhooks/nowpayments`` with genuine
signed IPNs (each order's waiting → confirming → confirmed → sending → finished, so every
IPN is verified, deduped, applied by compare-and-set and, for ``finished``, enqueues
fulfillment). Prints requests/s of both, the ratio (target >= 0.6) and p50/p99 latency,
once with the store's default ``synchronous=FULL`` and once with ``NORMAL``.

The load comes from ``wrk`` when it is installed (Debian package ``wrk``): a Python load
generator on the same two cores saturates before the server does and flattens the ratio
towards 1, so its numbers are printed with a warning.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = int(os.environ.get("BITLOOT_BENCH_CLIENTS", "64"))
WRK = shutil.which("wrk")

SERVER = r"""
import json, sys, hmac, hashlib
from pathlib import Path
import uvicorn
sys.path.insert(0, sys.argv[4])
from support.servers import load_example
from bitloot_adapters.bootstrap import build_shop
from bitloot_adapters.logs import configure_logging
from bitloot_adapters.settings import load_settings
from bitloot_core.providers.nowpayments import canonical_json
from bitloot_adapters.http_api import ROUTES, Route, json_response
import logging

configure_logging(level=logging.WARNING)
data, port, orders = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
env = {"BITLOOT_SQLITE_SYNCHRONOUS": sys.argv[5]}
shop = build_shop(load_settings(data_dir=data, port=port, env=env))
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
(data / "ipns.tsv").write_text("".join(f"{sig}\t{raw}\n" for raw, sig in ipns))
# The empty route goes through the same plumbing as every route of the server (FastAPI
# endpoint, thread pool, ShopApi dispatch, metrics): only the work differs.
def empty(api, request, params):
    return json_response(200, {"ok": True})

routes = (*ROUTES, Route("POST", "/bench/empty", empty))
app = load_example("fastapi_server").create_app(shop, routes=routes)
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


WRK_SCRIPT = """
local lines = {}
for line in io.lines(os.getenv("BITLOOT_BENCH_BODIES")) do lines[#lines + 1] = line end
local i = 0
request = function()
  i = i % #lines + 1
  local sig, body = lines[i]:match("^(%x*)\\t(.*)$")
  local headers = {["content-type"] = "application/json"}
  if sig ~= "" then headers["x-nowpayments-sig"] = sig end
  return wrk.format("POST", nil, headers, body)
end
"""


def _wrk(url: str, bodies: Path, seconds: int) -> tuple[float, float, float]:
    """requests/s, p50 ms, p99 ms from one wrk run (every answer must be 2xx)."""
    script = bodies.with_suffix(".lua")
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(  # noqa: S603 - wrk from the system, our arguments
        [
            WRK,
            "-t1",
            f"-c{CONCURRENCY}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        env={**os.environ, "BITLOOT_BENCH_BODIES": str(bodies)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"some requests failed:\n{out}")

    def millis(label: str) -> float:
        value = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if value is None:
            raise RuntimeError(f"no {label} latency in wrk's output:\n{out}")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[value.group(2)]
        return float(value.group(1)) * scale

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None:
        raise RuntimeError(f"no rate in wrk's output:\n{out}")
    return float(rate.group(1)), millis("50%"), millis("99%")


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Measured = tuple[float, float, float]  # requests/s, p50 ms, p99 ms


def _measure(base: str, data: Path, *, quick: bool) -> tuple[Measured, Measured, str]:
    """(empty route, webhook) under the same load."""
    ipns = [
        (raw.encode(), {"x-nowpayments-sig": sig, "content-type": "application/json"})
        for raw, sig in json.loads((data / "ipns.json").read_text())
    ]
    if WRK:
        empty_file = data / "empty.tsv"
        empty_file.write_text("".join(f"\t{raw.decode()}\n" for raw, _ in ipns[:500]))
        seconds = 3 if quick else 10
        _wrk(f"{base}/bench/empty", empty_file, 2)  # warm up
        empty = _wrk(f"{base}/bench/empty", empty_file, seconds)
        webhook = _wrk(f"{base}/webhooks/nowpayments", data / "ipns.tsv", seconds)
        return empty, webhook, "wrk"
    plain = [(raw, {"content-type": "application/json"}) for raw, _ in ipns]
    asyncio.run(_load(f"{base}/bench/empty", plain[:200]))  # warm up
    rps, lat = asyncio.run(_load(f"{base}/bench/empty", plain))
    empty = (rps, _percentile(lat, 0.5), _percentile(lat, 0.99))
    rps, lat = asyncio.run(_load(f"{base}/webhooks/nowpayments", ipns))
    webhook = (rps, _percentile(lat, 0.5), _percentile(lat, 0.99))
    return empty, webhook, "python (install wrk: this generator saturates first)"


def _run(synchronous: str, orders: int, *, quick: bool) -> tuple[Measured, Measured, str]:
    with tempfile.TemporaryDirectory() as tmp:
        data, port = Path(tmp), _free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        args = [str(data), str(port), str(orders), str(ROOT / "tests"), synchronous]
        child = subprocess.Popen([sys.executable, "-c", SERVER, *args], env=env)  # noqa: S603
        try:
            while not (data / "ready").exists():
                if child.poll() is not None:
                    raise RuntimeError("the bench server failed to start")
                time.sleep(0.1)
            time.sleep(0.5)
            return _measure(f"http://127.0.0.1:{port}", data, quick=quick)
        finally:
            child.terminate()
            child.wait(10)


def main(*, quick: bool = False) -> list[tuple[str, float, str]]:
    orders = 200 if quick else 1000
    results = []
    for synchronous in ("FULL", "NORMAL"):
        empty, webhook, generator = _run(synchronous, orders, quick=quick)
        ratio = webhook[0] / empty[0]
        print(f"BITLOOT_SQLITE_SYNCHRONOUS={synchronous}; load: {generator}, {CONCURRENCY} clients")
        for name, (rps, p50, p99) in (("empty-route", empty), ("ipn", webhook)):
            print(f"  webhook.{name:<12} {rps:8.0f} req/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
        print(f"  webhook.ipn ratio  {ratio:8.2f}x the empty route (target >= 0.6)")
        results.append((f"webhook.ratio.{synchronous.lower()}", ratio, ">= 0.6"))
    return results


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)

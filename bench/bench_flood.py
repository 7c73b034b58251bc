"""A genuine IPN's latency while strangers flood the webhook route, against an idle server.

A FastAPI example server (sandbox mode, SQLite in a temp dir, no worker thread) runs in
a child process. A second child process keeps ``FLOOD_CONNECTIONS`` (32) keep-alive
connections busy posting junk to ``/webhooks/nowpayments``: 64 KiB JSON bodies of nested
arrays under a made-up signature, the costliest body a stranger could send before the
canonical fallback was bounded. Meanwhile this process posts genuine signed IPNs one at
a time and times each answer. The same IPNs' latency on the idle server is the baseline.

Prints p50 and p99 of both and the ratios (target: p50 within 3x idle, p99 under
500 ms), plus how many junk requests the server answered and with what statuses.
``--quick`` measures fewer IPNs.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
FLOOD_CONNECTIONS = 32
JUNK_BYTES = 64 * 1024

SERVER = r"""
import hashlib, hmac, json, logging, sys
from pathlib import Path
import uvicorn
sys.path.insert(0, sys.argv[3])
from support.servers import load_example
from bitloot_adapters.bootstrap import build_shop
from bitloot_adapters.logs import configure_logging
from bitloot_adapters.settings import load_settings
from bitloot_core.providers.nowpayments.ipn import canonical_json

configure_logging(level=logging.WARNING)
data, port, orders = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[4])
shop = build_shop(load_settings(data_dir=data, port=port, env={}))
secret = shop.settings.ipn_secret.encode()
ipns = []
for n in range(orders):
    created = shop.checkout.create_order(email=f"f{n}@example.com", items=[("stardew-valley", 1)])
    payment = shop.checkout.open_payment(created.order.id, created.access_token).payment
    for status in ("confirming", "confirmed", "sending"):
        body = json.loads(shop.sandbox.payments.ipn_body(payment.id))
        body["payment_status"] = status
        raw = canonical_json(body).encode()
        ipns.append([raw.decode(), hmac.new(secret, raw, hashlib.sha512).hexdigest()])
(data / "ipns.json").write_text(json.dumps(ipns))
app = load_example("fastapi_server").create_app(shop)
(data / "ready").write_text("1")
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""

# The flood: plain sockets, one thread per connection, each posting the same junk request
# and reading the answer (Content-Length framed) before posting again.
FLOOD = r"""
import socket, sys, threading, time, collections
port, connections, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
unit = b"[" * 12 + b"1" + b"]" * 12
body = b'{"a":[' + b",".join([unit] * (size // (len(unit) + 1))) + b"]}"
body = body[: size - 2] + b"]}" if len(body) > size else body
request = (
    b"POST /webhooks/nowpayments HTTP/1.1\r\nhost: 127.0.0.1\r\n"
    b"content-type: application/json\r\nx-nowpayments-sig: " + b"ab" * 64 + b"\r\n"
    b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
)
statuses = collections.Counter()
stop = time.monotonic() + float(sys.argv[4])

def read_answer(sock, buffer):
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError
        rest += chunk
    return status, rest[length:]

def run():
    while time.monotonic() < stop:
        try:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                buffer = b""
                while time.monotonic() < stop:
                    sock.sendall(request)
                    status, buffer = read_answer(sock, buffer)
                    statuses[status] += 1
        except OSError:
            statuses["reset"] += 1

threads = [threading.Thread(target=run) for _ in range(connections)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(dict(statuses))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _timed(client: httpx.Client, ipns: list[tuple[str, str]]) -> list[float]:
    latencies = []
    for raw, signature in ipns:
        started = time.perf_counter()
        response = client.post(
            "/webhooks/nowpayments",
            content=raw.encode(),
            headers={"x-nowpayments-sig": signature, "content-type": "application/json"},
        )
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"a genuine IPN was refused: {response.status_code} {response.text}")
    return sorted(latencies)


def _p(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(len(values) * fraction))]


def main(*, quick: bool = False) -> list[tuple[str, float, str]]:
    per_phase = 60 if quick else 300
    orders = (2 * per_phase) // 3 + 1
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")},
        "PYTHONPATH": str(ROOT / "src"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        data, port = Path(tmp), _free_port()
        args = [str(data), str(port), str(ROOT / "tests"), str(orders)]
        server = subprocess.Popen([sys.executable, "-c", SERVER, *args], env=env)  # noqa: S603
        try:
            while not (data / "ready").exists():
                if server.poll() is not None:
                    raise RuntimeError("the bench server failed to start")
                time.sleep(0.1)
            ipns = [tuple(pair) for pair in json.loads((data / "ipns.json").read_text())]
            idle_ipns, flood_ipns = ipns[:per_phase], ipns[per_phase : 2 * per_phase]
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                deadline = time.monotonic() + 15
                while True:
                    try:
                        client.get("/healthz")
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
                idle = _timed(client, idle_ipns)
                seconds = 3 + per_phase * 0.1
                flood = subprocess.Popen(  # noqa: S603 - our own script
                    [
                        sys.executable,
                        "-c",
                        FLOOD,
                        str(port),
                        str(FLOOD_CONNECTIONS),
                        str(JUNK_BYTES),
                        str(seconds),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                time.sleep(1.0)  # let the flood build up
                flooded = _timed(client, flood_ipns)
                junk = flood.communicate(timeout=seconds + 60)[0].strip()
        finally:
            server.terminate()
            server.wait(10)
    p50_ratio = _p(flooded, 0.5) / _p(idle, 0.5)
    print(f"{FLOOD_CONNECTIONS} connections posting {JUNK_BYTES // 1024} KiB junk; answers: {junk}")
    for name, values in (("idle", idle), ("flooded", flooded)):
        print(
            f"  flood.ipn.{name:<8} p50 {_p(values, 0.5):7.1f} ms  p99 {_p(values, 0.99):7.1f} ms"
            f"  mean {statistics.fmean(values):7.1f} ms  ({len(values)} IPNs)"
        )
    print(f"  flood.ipn.p50 ratio {p50_ratio:6.2f}x idle (target <= 3)")
    print(f"  flood.ipn.p99       {_p(flooded, 0.99):6.1f} ms (target < 500)")
    return [
        ("flood.ipn.p50_ratio", p50_ratio, "<= 3"),
        ("flood.ipn.p99_ms", _p(flooded, 0.99), "< 500"),
    ]


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)

"""Slow clients over real sockets on both servers: a request that does not arrive in full
within the read deadline loses its connection, and the shop keeps serving meanwhile.

The servers run as the examples configure them, with the read deadline shortened to one
second so the test is quick."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from support.servers import running_server

KINDS = ["fastapi", "flask"]
READ_SECONDS = 1.0
# The deadline, plus the Flask server's check interval, plus slack for a busy machine.
CLOSED_WITHIN = READ_SECONDS + 6.0


def _closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) before ``deadline``."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(4096)
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        if not data:
            return True
        # A 408 or 400 before closing is fine too; keep reading until EOF.
    return False


@pytest.mark.parametrize("kind", KINDS)
def test_half_sent_requests_are_dropped_and_others_served(kind: str, tmp_path: Path) -> None:
    with running_server(kind, tmp_path / "data", read_seconds=READ_SECONDS) as s:
        port = int(s.url.rsplit(":", 1)[1])
        slow: list[socket.socket] = []
        try:
            for n in range(60):
                sock = socket.create_connection(("127.0.0.1", port))
                if n % 3 == 0:
                    pass  # connects and says nothing
                elif n % 3 == 1:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: shop\r\n")  # no blank line
                else:
                    sock.sendall(
                        b"POST /api/orders HTTP/1.1\r\nHost: shop\r\n"
                        b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"em'
                    )
                slow.append(sock)
            # Everyone else is still served while they hang.
            assert s.http.get("/healthz").status_code == 200
            deadline = time.monotonic() + CLOSED_WITHIN
            still_open = [sock for sock in slow if not _closed_by_server(sock, deadline)]
            assert still_open == []
            assert s.http.get("/healthz").status_code == 200
        finally:
            for sock in slow:
                sock.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_trickling_request_is_dropped_at_the_deadline(kind: str, tmp_path: Path) -> None:
    """Bytes keep coming, one every 0.2 s: activity alone does not keep a request open."""
    with running_server(kind, tmp_path / "data", read_seconds=READ_SECONDS) as s:
        port = int(s.url.rsplit(":", 1)[1])
        request = b"GET /healthz HTTP/1.1\r\nHost: shop\r\nX-Padding: " + b"a" * 200
        closed = threading.Event()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            started = time.monotonic()

            def trickle() -> None:
                for byte in request:
                    if closed.is_set():
                        return
                    try:
                        sock.sendall(bytes([byte]))
                    except OSError:
                        return
                    time.sleep(0.2)

            sender = threading.Thread(target=trickle, daemon=True)
            sender.start()
            assert _closed_by_server(sock, started + CLOSED_WITHIN)
            closed.set()
            sender.join(5)


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_that_arrives_in_time_is_answered(kind: str, tmp_path: Path) -> None:
    with running_server(kind, tmp_path / "data", read_seconds=READ_SECONDS) as s:
        port = int(s.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: shop\r\n")
            time.sleep(READ_SECONDS / 2)
            sock.sendall(b"Connection: close\r\n\r\n")
            sock.settimeout(10)
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]

"""The Django example starts as the other two do, as its own process, on uvicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.servers import EXAMPLES, free_port


def test_python_examples_django_server_serves_the_shop(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
    command = [
        sys.executable,
        str(EXAMPLES / "django_server.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "data"),
    ]
    process = subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{url}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the Django server never answered"
                time.sleep(0.1)
        assert health.json()["status"] == "ok"
        assert health.headers["server"] == "uvicorn"  # a production server, not runserver
        products = httpx.get(f"{url}/api/products").json()
        assert products
        page = httpx.get(f"{url}/admin")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert httpx.get(f"{url}/openapi.json").json()["openapi"] == "3.1.0"
    finally:
        process.terminate()
        out, err = process.communicate(timeout=20)
    assert f"{url}/" in out + err  # the start banner names the shop's address

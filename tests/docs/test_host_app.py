"""The app in docs/host-app.md, run exactly as printed, sells a key end to end.

The guide's only Python block is written to ``shop.py`` in an empty directory and run as
``python shop.py PORT`` with no ``BITLOOT_*`` variable, as a reader would run it. The test
then follows the guide's own steps over HTTP: the host's page, its own route calling
``Checkout``, bitloot's routes for the payment, the sandbox paying, the order's
keys, and the admin API with the token the app printed.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "host-app.md"
BLOCKS = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.DOTALL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def guide_app(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    (tmp_path / "shop.py").write_text(BLOCKS[0], encoding="utf-8")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITLOOT_")}
    with subprocess.Popen(  # noqa: S603 - the guide's app, fixed arguments
        [sys.executable, "shop.py", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            printed: dict[str, str] = {}
            while "serving on" not in printed:
                line = process.stdout.readline()
                assert line, f"the guide's app exited: {printed}"
                name, _, value = line.strip().partition(": ")
                printed[name if value else line.split(" http")[0]] = value or line
            yield f"http://127.0.0.1:{port}", printed
        finally:
            process.terminate()
            process.wait(timeout=20)
    # shop.close() ran: the data dir is where the guide says, in the app's directory.
    assert (tmp_path / "shop-data" / "bitloot.db").exists()


def test_the_guides_app_sells_a_key(guide_app: tuple[str, dict[str, str]]) -> None:
    assert len(BLOCKS) == 1, "the guide has one Python block: the app"
    url, printed = guide_app
    assert printed["mode"] == "sandbox"
    token = printed["admin token"]
    with httpx.Client(base_url=url, timeout=20) as http:
        page = http.get("/")
        assert "<h1>My game shop</h1>" in page.text
        assert "bitloot gift card $10" in page.text
        assert "Founder" not in page.text  # sold out: not offered

        refused = http.post("/quick-buy", json={"email": "not-an-email", "product": "x"})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "invalid_email"
        unknown = http.post("/quick-buy", json={"email": "you@example.com", "product": "nope"})
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_product")

        created = http.post(
            "/quick-buy", json={"email": "you@example.com", "product": "gift-card-10"}
        )
        assert created.status_code == 201
        order = created.json()
        auth = {"authorization": f"Bearer {order['access_token']}"}
        payment = http.post(f"/api/orders/{order['id']}/payment", headers=auth).json()["payment"]
        paid = http.post(f"/sandbox/payments/{payment['id']}/pay")
        # wsgiref tells the app it is single-threaded (wsgi.multithread is False, even
        # with ThreadingMixIn): the IPNs go out right after this answer.
        assert len(paid.json()["ipns"]) == 5
        deadline = time.monotonic() + 20
        while (current := http.get(f"/api/orders/{order['id']}", headers=auth).json())[
            "status"
        ] != "fulfilled":
            assert time.monotonic() < deadline, current
            time.sleep(0.1)
        item = current["items"][0]
        revealed = http.post(f"/api/orders/{order['id']}/items/{item['id']}/reveal", headers=auth)
        key = http.get(httpx.URL(revealed.json()["url"]).path)
        assert key.status_code == 200
        assert key.text.startswith("GIFT-")

        admin = http.get("/api/admin/orders", headers={"authorization": f"Bearer {token}"})
        assert [o["id"] for o in admin.json()] == [order["id"]]
        assert admin.json()[0]["payment"]["status"] == "finished"

"""Lighthouse on the customer page: the four category scores for the shop and an order.

Run by ``make audit`` (not part of ``make test``): starts the example shop in sandbox
mode on a free loopback port, opens an order waiting for payment, and runs Lighthouse
(installed from the npm registry into audit/node_modules) with Debian's Chromium.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.servers import running_server  # noqa: E402

LIGHTHOUSE = HERE / "node_modules" / ".bin" / "lighthouse"
CHROMIUM = "/usr/bin/chromium"
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
FLAGS = "--headless=new --no-sandbox --disable-gpu --no-first-run --disable-background-networking"


def lighthouse(url: str) -> dict[str, object]:
    answer = subprocess.run(  # noqa: S603 - our own pinned tool on a loopback URL
        [
            str(LIGHTHOUSE),
            url,
            "--output=json",
            "--output-path=stdout",
            "--quiet",
            f"--only-categories={','.join(CATEGORIES)}",
            f"--chrome-flags={FLAGS}",
        ],
        capture_output=True,
        check=True,
        text=True,
        env={**os.environ, "CHROME_PATH": CHROMIUM},
        timeout=300,
    )
    report: dict[str, object] = json.loads(answer.stdout)
    return report


def summary(name: str, report: dict[str, object]) -> str:
    categories = report["categories"]
    audits = report["audits"]
    assert isinstance(categories, dict)
    assert isinstance(audits, dict)
    scores = "  ".join(f"{key} {round(categories[key]['score'] * 100)}" for key in CATEGORIES)
    cls = audits["cumulative-layout-shift"]["displayValue"]
    return f"{name:<6} {scores}  (CLS {cls})"


def main() -> None:
    with tempfile.TemporaryDirectory() as data, running_server("fastapi", Path(data)) as shop:
        created = shop.http.post(
            "/api/orders",
            json={"email": "buyer@example.com", "items": [{"product_id": "stardew-valley"}]},
        ).json()
        token = created["access_token"]
        shop.http.post(f"/api/orders/{created['id']}/payment", params={"token": token})
        pages = {
            "shop": f"{shop.url}/",
            "order": f"{shop.url}/order/{created['id']}?token={token}",
        }
        try:
            for name, url in pages.items():
                print(summary(name, lighthouse(url)), flush=True)
        finally:
            shop.http.post("/sandbox/clock/advance", json={"seconds": 3660})


if __name__ == "__main__":
    main()

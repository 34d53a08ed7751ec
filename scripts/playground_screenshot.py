"""The README's picture of the playground: the page in headless Chromium, as a PNG.

    .venv/bin/python scripts/playground_screenshot.py [docs/figures/playground.png]

Serves the playground on a free loopback port in this process, opens a permalink showing the
notes' elongated bowl with SGD, momentum and RMSprop (epsilon inside the root), and saves the
screenshot. Needs Chromium (Debian's ``chromium``) and Playwright (the dev extra).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import sync_playwright

from optimlab.lab.playground.server import running

STATE = {
    "tab": "paths",
    "paths": {
        "function": "quadratic_bowl",
        "start": [-9, 1.5],
        "steps": 120,
        "log": True,
        "optimizers": [
            {"name": "sgd", "settings": {"lr": 0.45}},
            {"name": "momentum", "settings": {"lr": 0.45, "momentum": 0.9}},
            {"name": "rmsprop", "settings": {"lr": 0.1, "eps_inside_sqrt": True}},
        ],
    },
}
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def main(out: Path) -> None:
    with running() as address, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
        page = browser.new_page(viewport={"width": 1360, "height": 860})
        page.goto(address + "#" + quote(json.dumps(STATE)))
        page.wait_for_function("window.playground?.reply.paths && window.playground.idle()")
        page.screenshot(path=str(out))
        browser.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/figures/playground.png"))

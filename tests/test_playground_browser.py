"""The playground page in a real Chromium, driven by Playwright (issue 19).

The page is served by the real server on loopback; every request to any other host is
refused and recorded, so the page is shown to work offline. Each test moves a control as a
user does, waits for the page to be idle (no request in flight, none scheduled), and checks
what it drew against optimlab's plain API. The console must stay free of errors. Screenshots
are kept in ``tests/artifacts/playground/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
playwright_api = pytest.importorskip("playwright.sync_api")

import optimlab  # noqa: E402
from optimlab.lab.functions import FUNCTIONS  # noqa: E402
from optimlab.lab.playground.controls import arguments  # noqa: E402
from optimlab.lab.playground.server import missing_assets, running  # noqa: E402

pytestmark = pytest.mark.xdist_group("playground-browser")

ARTIFACTS = Path(__file__).parent / "artifacts" / "playground"
HANG = 60_000  # milliseconds: only a hang waits this long
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="module")
def address():
    assert not missing_assets(), "the page's scripts are not built: run `make build`"
    with running() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    if executable is None:
        pytest.skip("chromium is not installed (make test installs Debian's)")
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


class Page:
    """A page of the playground, with what it logged and what it tried to fetch elsewhere."""

    def __init__(self, browser, address: str) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 950})
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.context.route("**/*", self._only_loopback)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.address = address

    def _only_loopback(self, route) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort("internetdisconnected")

    def open(self, suffix: str = "") -> None:
        self.page.goto(self.address + suffix)
        self.settle()

    def settle(self) -> None:
        self.page.wait_for_function(
            "window.playground && window.playground.pending() === 0 && window.playground.idle()",
            timeout=HANG,
        )

    def value(self, expression: str):
        return self.page.evaluate(expression)

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()
        assert not self.errors, self.errors
        assert not self.outside, f"the page fetched from outside: {self.outside}"


@pytest.fixture
def page(browser, address):
    opened = Page(browser, address)
    yield opened
    opened.close()


def _plain(name: str, settings: dict, function_name: str, start, steps: int):
    function = FUNCTIONS[function_name]
    point = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = optimlab.OPTIMIZERS[name]([point], **arguments(settings, name))
    xs = [start[0]]
    for _ in range(steps):
        optimizer.zero_grad()
        function.f(point).backward()
        optimizer.step()
        xs.append(point.tolist()[0])
    return xs


def _drawn_x(page: Page, index: int) -> list[float]:
    """The x coordinates of path ``index`` as drawn in the contour plot."""
    return page.value(f"Array.from(document.getElementById('contour').data[{index + 1}].x)")


def test_the_page_loads_offline_and_draws_every_path(page):
    page.open()
    reply = page.value("window.playground.reply.paths")
    assert [p["name"] for p in reply["paths"]] == ["sgd", "momentum", "rmsprop"]
    for i, path in enumerate(reply["paths"]):
        assert _drawn_x(page, i) == pytest.approx(path["x"])
    assert page.value("document.querySelectorAll('#card-0 .rule .katex').length") >= 2
    assert page.value("document.querySelector('#card-0 .code').textContent").startswith(
        "optimlab.SGD("
    )
    page.shot("paths")


def test_moving_a_slider_moves_the_path_as_the_plain_api_does(page):
    page.open()
    before = _drawn_x(page, 0)
    slider = page.page.locator("#knob-0-lr")
    slider.focus()
    for _ in range(6):
        slider.press("ArrowLeft")
    page.settle()
    state = page.value("window.playground.state.paths")
    settings = state["optimizers"][0]["settings"]
    assert settings["lr"] < 0.45
    after = _drawn_x(page, 0)
    assert after != before
    start = FUNCTIONS[state["function"]].start
    assert after == pytest.approx(
        _plain("sgd", settings, state["function"], start, state["steps"]), rel=1e-9, abs=1e-12
    )
    assert (
        page.value("document.querySelector('#card-0 .code').textContent")
        == f"optimlab.SGD(params, lr={settings['lr']:.6g})"
    )
    page.shot("slider")


def test_eps_inside_the_root_changes_the_rmsprop_path_as_the_plain_api_says(page):
    page.open()
    before = _drawn_x(page, 2)
    page.page.locator("#card-2 input[type=checkbox][data-key=eps_inside_sqrt]").check()
    page.settle()
    after = _drawn_x(page, 2)
    assert after != before
    state = page.value("window.playground.state.paths")
    settings = state["optimizers"][2]["settings"]
    assert settings["eps_inside_sqrt"] is True
    start = FUNCTIONS[state["function"]].start
    expected = _plain("rmsprop", settings, state["function"], start, state["steps"])
    assert after == pytest.approx(expected, rel=1e-9, abs=1e-12)
    unchanged = _plain(
        "rmsprop", {**settings, "eps_inside_sqrt": False}, state["function"], start, state["steps"]
    )
    assert before == pytest.approx(unchanged, rel=1e-9, abs=1e-12)
    assert "\\sqrt{s_t + \\epsilon}" in page.value(
        "window.playground.reply.paths.paths[2].rule.join(' ')"
    )
    page.shot("eps_inside_sqrt")


def test_the_permalink_restores_the_exact_picture(page, browser, address):
    page.open()
    page.page.select_option("#function", "rosenbrock")
    page.settle()
    page.page.locator("#card-1 select[data-key=form]").select_option("heavy_ball")
    page.settle()
    link = page.page.url
    drawn = [_drawn_x(page, i) for i in range(3)]
    again = Page(browser, address)
    try:
        again.page.goto(link)
        again.settle()
        assert again.value("window.playground.state.paths.function") == "rosenbrock"
        assert (
            again.value("document.querySelector('#card-1 select[data-key=form]').value")
            == "heavy_ball"
        )
        assert [_drawn_x(again, i) for i in range(3)] == drawn
    finally:
        again.close()


def test_a_click_on_the_contours_moves_the_start(page):
    page.open()
    box = page.page.locator("#contour .nsewdrag").first.bounding_box()
    page.page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.25)
    page.settle()
    start = page.value("window.playground.state.paths.start")
    # the bowl's plot spans x in [-10, 10], y in [-2.5, 2.5]: three quarters across, a quarter down
    assert start[0] == pytest.approx(5.0, abs=0.3) and start[1] == pytest.approx(1.25, abs=0.1)
    assert page.value("window.playground.reply.paths.paths[0].x[0]") == start[0]


def test_the_ewa_table_shows_the_notes_numbers(page):
    page.open(
        "#"
        + '{"tab":"ewa"}'.replace('"', "%22")
        .replace("{", "%7B")
        .replace("}", "%7D")
        .replace(":", "%3A")
    )
    rows = page.value(
        "Array.from(document.querySelectorAll('#ewa-example tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent))"
    )
    assert rows == [
        ["1", "20", "4", "20"],
        ["2", "23", "7.8", "21.67"],
        ["3", "17", "9.64", "19.75"],
    ]
    windows = page.value(
        "Array.from(document.querySelectorAll('#windows tbody tr')).map(r => r.cells[1].textContent)"
    )
    assert windows == ["2", "10", "50"]
    page.page.locator("#corrected").check()
    page.settle()
    assert "corrected" in page.value("document.getElementById('ewa-plot').data[1].name")
    page.shot("ewa")


def test_a_dropped_csv_is_averaged(page, tmp_path):
    page.open()
    page.page.click("#tabs button[data-tab=ewa]")
    page.settle()
    csv = tmp_path / "rain.csv"
    csv.write_text("day,rain\n1,3\n2,0\n3,7\n4,1\n")
    page.page.set_input_files("#csv", str(csv))
    page.page.wait_for_function("window.playground.reply.ewa.name === 'rain'", timeout=HANG)
    page.settle()
    assert page.value("window.playground.reply.ewa.series") == [3, 0, 7, 1]


def test_a_bad_schedule_is_named_on_the_page(page):
    page.open()
    page.page.click("#tabs button[data-tab=schedules]")
    page.settle()
    page.page.fill("#specs", "steps_decay:lr=0.1")
    page.page.wait_for_function("!document.getElementById('error').hidden", timeout=HANG)
    page.settle()
    message = page.value("document.getElementById('error').textContent")
    assert "unknown schedule 'steps_decay'" in message and "step_decay" in message
    page.shot("schedule_error")
    page.page.fill("#specs", "step_decay:lr=0.1,gamma=0.5,step_size=100")
    page.page.wait_for_function("document.getElementById('error').hidden", timeout=HANG)
    page.settle()
    assert page.value("window.playground.reply.schedules.schedules[0].lr[150]") == pytest.approx(
        0.05
    )
    # Chromium itself logs each refused request; the page logged nothing else
    refusals = [e for e in page.errors if "status of 400 (Bad Request)" in e]
    assert refusals and len(refusals) == len(page.errors)
    page.errors.clear()


def test_batch_sizes_train_on_the_server_and_draw_both_curves(page):
    page.open()
    page.page.click("#tabs button[data-tab=batch]")
    page.page.select_option("#dataset", "iris")
    page.page.wait_for_function("window.playground.reply.batch?.dataset === 'iris'", timeout=HANG)
    page.settle()
    runs = page.value("window.playground.reply.batch.runs")
    assert [r["batch_size"] for r in runs] == [1, 16, None]
    assert runs[0]["label"] == "stochastic (1)" and runs[-1]["label"].startswith("batch (all")
    for plot, axis in (("batch-steps", "step"), ("batch-seconds", "seconds")):
        drawn = page.value(f"document.getElementById('{plot}').data.map(t => Array.from(t.x))")
        assert drawn == [r[axis] for r in runs]
    slider = page.page.locator("#batch-size")
    slider.focus()
    slider.press("ArrowRight")  # 16 -> 32
    page.page.wait_for_function(
        "window.playground.reply.batch.runs[1].batch_size === 32", timeout=HANG
    )
    page.settle()
    page.shot("batch")


def test_adding_removing_and_animating_optimizers(page):
    page.open()
    page.page.select_option("#add-optimizer", "adam")
    page.page.click("#add")
    page.settle()
    assert [p["name"] for p in page.value("window.playground.reply.paths.paths")] == [
        "sgd",
        "momentum",
        "rmsprop",
        "adam",
    ]
    assert (
        page.value("document.querySelector('#card-3 .code').textContent")
        == "optimlab.Adam(params, lr=0.001)"
    )
    page.page.click("#card-0 h4 button")  # remove SGD
    page.settle()
    names = [p["name"] for p in page.value("window.playground.reply.paths.paths")]
    assert names == ["momentum", "rmsprop", "adam"]
    full = [_drawn_x(page, i) for i in range(3)]
    page.page.click("#animate")
    page.page.wait_for_function(
        "document.getElementById('contour').data[1].x.length < window.playground.reply.paths.paths[0].x.length",
        timeout=HANG,
    )  # the animation starts from the first steps
    page.page.wait_for_function(
        "document.getElementById('contour').data.slice(1, 4).every((t, i) => t.x.length === window.playground.reply.paths.paths[i].x.length)",
        timeout=HANG,
    )  # and ends with the whole paths drawn
    assert [_drawn_x(page, i) for i in range(3)] == full

"""The playground's HTTP endpoints (issue 19), good input and bad, through Starlette's client.

The numbers are checked against what someone else computes: torch.optim's Adam, the closed
forms of gradient descent on a quadratic and of the schedules, the notes' worked example of
the averages, and the plain optimlab API stepped by autograd (which the playground replaces by
each function's closed-form gradient).
"""

from __future__ import annotations

import builtins
import io
import json
import math
import pathlib

import pytest
import torch

pytest.importorskip("starlette")

from starlette.testclient import TestClient  # noqa: E402

import optimlab  # noqa: E402
from optimlab.lab.functions import FUNCTIONS  # noqa: E402
from optimlab.lab.playground import api  # noqa: E402
from optimlab.lab.playground.controls import PLAYGROUND_OPTIMIZERS, arguments  # noqa: E402
from optimlab.lab.playground.server import create_app  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app()) as c:
        yield c


def post(client, view, body):
    return client.post(f"/api/{view}", json=body)


def refused(response, *words):
    """A 400 whose error is one line naming each of ``words``."""
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert "\n" not in message and message
    for word in words:
        assert word in message, message
    return message


def plain_path(name, settings, function, start, steps):
    """The path the plain API takes: optimlab's class stepped with autograd's gradients."""
    point = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = optimlab.OPTIMIZERS[name]([point], **arguments(settings, name))
    xs, ys = [start[0]], [start[1]]
    for _ in range(steps):
        optimizer.zero_grad()
        function.f(point).backward()
        optimizer.step()
        x, y = point.tolist()
        xs.append(x)
        ys.append(y)
    return xs, ys


# --- the catalog and the page -------------------------------------------------------------------


def test_the_catalog_lists_every_function_and_optimizer_with_valid_defaults(client):
    reply = client.get("/api/catalog").json()
    assert [f["name"] for f in reply["functions"]] == list(FUNCTIONS)
    assert [o["name"] for o in reply["optimizers"]] == list(PLAYGROUND_OPTIMIZERS)
    assert {"sgd", "momentum", "rmsprop", "adam", "adamw"} <= set(PLAYGROUND_OPTIMIZERS)
    for entry in reply["optimizers"]:
        for knob in entry["knobs"]:
            value = entry["defaults"][knob["key"]]
            if knob["kind"] in ("linear", "log"):
                assert knob["low"] <= value <= knob["high"], (entry["name"], knob, value)
            elif knob["kind"] == "choice":
                assert value in knob["choices"]
    assert reply["limits"]["steps"] == api.LIMITS["steps"]


def test_the_page_and_its_scripts_are_served_and_nothing_else(client):
    page = client.get("/")
    assert page.status_code == 200 and "optimlab playground" in page.text
    assert client.get("/static/playground.js").status_code == 200
    for path in ("/static/../api.py", "/static/%2e%2e/api.py", "/nothing", "/static/nothing.js"):
        response = client.get(path)
        assert response.status_code == 404, path
    assert client.get("/api/paths").status_code == 405
    assert "error" in client.get("/api/paths").json()


# --- paths --------------------------------------------------------------------------------------


def test_gradient_descent_on_the_bowl_follows_its_closed_form(client):
    # f = x^2/10 + 2 y^2: each step multiplies x by (1 - lr/5) and y by (1 - 4 lr)
    lr, steps = 0.3, 50
    reply = post(
        client,
        "paths",
        {
            "function": "quadratic_bowl",
            "steps": steps,
            "optimizers": [{"name": "sgd", "settings": {"lr": lr}}],
        },
    ).json()
    path = reply["paths"][0]
    x0, y0 = FUNCTIONS["quadratic_bowl"].start
    for t in range(steps + 1):
        assert path["x"][t] == pytest.approx(x0 * (1 - lr / 5) ** t, rel=1e-12, abs=1e-300)
        assert path["y"][t] == pytest.approx(y0 * (1 - 4 * lr) ** t, rel=1e-11, abs=1e-300)
    for t in (0, 10, steps):
        f = path["x"][t] ** 2 / 10 + 2 * path["y"][t] ** 2
        assert path["gap"][t] == pytest.approx(f, rel=1e-12, abs=1e-300)
    assert path["code"] == "optimlab.SGD(params, lr=0.3)"
    assert path["diverged_at"] is None


def test_adam_on_rosenbrock_is_torch_adam(client):
    rosenbrock = FUNCTIONS["rosenbrock"]
    start, steps = [-1.2, 1.0], 200
    reply = post(
        client,
        "paths",
        {
            "function": "rosenbrock",
            "start": start,
            "steps": steps,
            "optimizers": [{"name": "adam", "settings": {"lr": 0.02}}],
        },
    ).json()
    point = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    reference = torch.optim.Adam([point], lr=0.02)
    for t in range(1, steps + 1):
        reference.zero_grad()
        rosenbrock.f(point).backward()
        reference.step()
        x, y = point.tolist()
        # the playground's gradient is the closed form, autograd's may differ in the last bit
        assert reply["paths"][0]["x"][t] == pytest.approx(x, rel=1e-9, abs=1e-12)
        assert reply["paths"][0]["y"][t] == pytest.approx(y, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", list(PLAYGROUND_OPTIMIZERS))
def test_every_optimizer_takes_the_path_of_the_plain_api(client, name):
    function, steps = FUNCTIONS["himmelblau"], 40
    lr = {"adadelta": 1.0, "lars": 1.0, "schedule_free_sgd": 0.01, "prodigy": 1.0}.get(name, 0.01)
    settings = {"lr": lr}
    reply = post(
        client,
        "paths",
        {
            "function": "himmelblau",
            "steps": steps,
            "optimizers": [{"name": name, "settings": settings}],
        },
    ).json()
    path = reply["paths"][0]
    if name.startswith(
        "schedule_free"
    ):  # drawn at the average it evaluates, not the gradient point
        assert len(path["x"]) == steps + 1
        return
    xs, ys = plain_path(name, settings, function, list(function.start), steps)
    assert path["x"] == pytest.approx(xs, rel=1e-9, abs=1e-12)
    assert path["y"] == pytest.approx(ys, rel=1e-9, abs=1e-12)
    assert path["rule"] and all(isinstance(line, str) for line in path["rule"])
    assert path["code"].startswith(f"optimlab.{optimlab.OPTIMIZERS[name].__name__}(params, lr=")


def test_eps_inside_the_root_changes_the_rmsprop_path_as_the_plain_api_does(client):
    function, start, steps = FUNCTIONS["rosenbrock"], [-1.2, 1.0], 60
    outside = {"lr": 0.01, "eps": 0.01}
    inside = {**outside, "eps_inside_sqrt": True}
    body = {
        "function": "rosenbrock",
        "start": start,
        "steps": steps,
        "optimizers": [
            {"name": "rmsprop", "settings": outside},
            {"name": "rmsprop", "settings": inside},
        ],
    }
    a, b = post(client, "paths", body).json()["paths"]
    assert a["x"] != b["x"]
    for settings, path in ((outside, a), (inside, b)):
        xs, ys = plain_path("rmsprop", settings, function, start, steps)
        assert path["x"] == pytest.approx(xs, rel=1e-9, abs=1e-12)
    # and the first step by hand, in float64: s = (1 - alpha) g^2, w -= lr g / sqrt(s + eps)
    g = function.gradient(*start)
    for i in range(2):
        s = (1 - 0.99) * g[i] ** 2
        assert b["x" if i == 0 else "y"][1] == pytest.approx(
            start[i] - 0.01 * g[i] / math.sqrt(s + 0.01), rel=1e-13
        )
        assert a["x" if i == 0 else "y"][1] == pytest.approx(
            start[i] - 0.01 * g[i] / (math.sqrt(s) + 0.01), rel=1e-13
        )
    assert "\\sqrt{s_t + \\epsilon}" in b["rule"][-1] and "\\sqrt{s_t} + \\epsilon" in a["rule"][-1]
    assert b["code"] == "optimlab.RMSprop(params, lr=0.01, eps=0.01, eps_inside_sqrt=True)"


def test_the_rule_follows_the_variant():
    rule = optimlab.lab.playground.controls.update_rule
    assert any("1 - \\beta_1^t" in line for line in rule("adam", {}))
    assert not any("1 - \\beta_1^t" in line for line in rule("adam", {"bias_correction": False}))
    assert "w_{t-2}" in rule("momentum", {"form": "heavy_ball"})[-1]
    assert "v_t = \\beta v_{t-1} + (1 - \\beta)" in rule("momentum", {})[1]


def test_a_path_that_diverges_ends_there_and_says_when(client):
    reply = post(
        client,
        "paths",
        {
            "function": "quadratic_bowl",
            "steps": 500,
            "optimizers": [{"name": "sgd", "settings": {"lr": 0.6}}],
        },
    ).json()
    path = reply["paths"][0]  # |1 - 4 lr| = 1.4 > 1: y grows by 1.4 each step
    assert path["diverged_at"] is not None and len(path["x"]) == path["diverged_at"]
    assert all(math.isfinite(v) for v in path["x"] + path["y"])


def test_saddles_have_values_and_no_gap(client):
    reply = post(
        client,
        "paths",
        {
            "function": "saddle",
            "steps": 5,
            "optimizers": [{"name": "sgd", "settings": {"lr": 0.1}}],
        },
    ).json()
    assert reply["minimum_value"] is None and reply["paths"][0]["gap"] is None
    assert reply["paths"][0]["f"][0] == pytest.approx((-1.5) ** 2 - 1e-3**2)


def test_the_surface_levels_are_the_labs_contours(client):
    reply = post(client, "surface", {"function": "rosenbrock"}).json()
    assert len(reply["x"]) == len(reply["level"][0]) == 101
    assert (
        min(map(min, reply["level"])) >= 0 and max(map(max, reply["level"])) <= reply["levels"] - 1
    )
    f = FUNCTIONS["rosenbrock"].f(torch.tensor([reply["x"][7], reply["y"][3]], dtype=torch.float64))
    assert reply["f"][3][7] == pytest.approx(float(f), abs=1e-6)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_closed_form_gradients_match_autograd(name):
    function = FUNCTIONS[name]
    generator = torch.Generator().manual_seed(0)
    (x_lo, x_hi), (y_lo, y_hi) = function.bounds
    for _ in range(25):
        u = torch.rand(2, generator=generator, dtype=torch.float64)
        point = torch.tensor(
            [x_lo + u[0] * (x_hi - x_lo), y_lo + u[1] * (y_hi - y_lo)],
            dtype=torch.float64,
            requires_grad=True,
        )
        function.f(point).backward()
        expected = point.grad.tolist()
        found = function.gradient(*point.tolist())
        scale = max(1.0, *map(abs, expected))
        assert found == pytest.approx(expected, abs=1e-12 * scale)


def test_moving_one_slider_recomputes_only_that_path(client, monkeypatch):
    body = {
        "function": "beale",
        "steps": 30,
        "optimizers": [
            {"name": "adam", "settings": {"lr": 0.011}},
            {"name": "sgd", "settings": {"lr": 0.001}},
        ],
    }
    first = post(client, "paths", body).json()["paths"]
    made = []
    real = api.REGISTRY["sgd"].cls, api.REGISTRY["adam"].cls
    monkeypatch.setattr(
        api,
        "REGISTRY",
        {n: type("E", (), {"cls": _counting(c, made)}) for n, c in zip(("sgd", "adam"), real)},
    )
    body["optimizers"][1]["settings"]["lr"] = 0.002
    second = post(client, "paths", body).json()["paths"]
    assert made == ["SGD"]
    assert second[0] == first[0] and second[1] != first[1]


def _counting(cls, made):
    def make(*args, **kwargs):
        made.append(cls.__name__)
        return cls(*args, **kwargs)

    return make


# --- bad requests -------------------------------------------------------------------------------

BAD_PATHS = [
    ({"optimizers": [{"name": "adamm"}]}, ("unknown optimizer", "'adamm'", "adam")),
    ({"optimizers": [{"name": "sgd", "settings": {"lr": -0.1}}]}, ("lr", "-0.1")),
    ({"optimizers": [{"name": "sgd", "settings": {"lr": 0}}]}, ("lr", "got 0")),
    ({"optimizers": [{"name": "sgd", "settings": {"lr": "fast"}}]}, ("lr", "'fast'")),
    ({"optimizers": [{"name": "adam", "settings": {"betas.0": 1.5}}]}, ("betas.0", "1.5")),
    (
        {"optimizers": [{"name": "momentum", "settings": {"form": "nag"}}]},
        ("form", "ema, heavy_ball"),
    ),
    (
        {"optimizers": [{"name": "adam", "settings": {"eps_inside_sqrt": 1}}]},
        ("eps_inside_sqrt", "true or false"),
    ),
    (
        {"optimizers": [{"name": "adam", "settings": {"momentum": 0.9}}]},
        ("adam has no setting", "'momentum'"),
    ),
    ({"optimizers": [{"name": "sgd"}], "steps": 2001}, ("steps", "2000", "2001")),
    ({"optimizers": [{"name": "sgd"}], "steps": 0}, ("steps",)),
    ({"optimizers": [{"name": "sgd"}], "steps": 1.5}, ("steps", "whole number")),
    ({"optimizers": [{"name": "sgd"}] * 9}, ("optimizers", "1 to 8", "9")),
    ({"optimizers": []}, ("optimizers", "1 to 8")),
    ({}, ("optimizers", "must be a list")),
    ({"optimizers": [{"name": "sgd"}], "function": "sphere"}, ("unknown function", "rosenbrock")),
    ({"optimizers": [{"name": "sgd"}], "start": [1.0]}, ("start", "[x, y]")),
    ({"optimizers": [{"name": "sgd"}], "start": [1e9, 0.0]}, ("start x", "1000000000.0")),
    ({"optimizers": [{"name": "sgd"}], "colour": "red"}, ("no field", "'colour'")),
    ({"optimizers": [{"name": "sgd", "lr": 0.1}]}, ("optimizers[0]", "no field", "'lr'")),
    # a list or an object where a name belongs (was a TypeError: 500, a traceback)
    ({"optimizers": [{"name": ["sgd"]}]}, ("unknown optimizer", "['sgd']")),
    ({"optimizers": [{"name": "sgd"}], "function": {"a": 1}}, ("unknown function", "{'a': 1}")),
]


@pytest.mark.parametrize("body, words", BAD_PATHS, ids=[str(i) for i in range(len(BAD_PATHS))])
def test_bad_path_requests_are_refused_with_one_line(client, body, words):
    refused(post(client, "paths", body), *words)


def test_nan_and_infinite_learning_rates_are_refused(client):
    for literal in ("NaN", "Infinity", "-Infinity"):
        body = '{"optimizers": [{"name": "sgd", "settings": {"lr": LR}}]}'.replace("LR", literal)
        response = client.post(
            "/api/paths", content=body, headers={"content-type": "application/json"}
        )
        refused(response, "lr")


def test_malformed_and_oversized_bodies_are_refused(client):
    refused(
        client.post(
            "/api/paths", content=b"{not json", headers={"content-type": "application/json"}
        ),
        "not JSON",
    )
    refused(
        client.post(
            "/api/paths", content=b"\xff\xfe", headers={"content-type": "application/json"}
        ),
        "not JSON",
    )
    refused(post(client, "paths", [1, 2]), "JSON object")
    # JSON that Python's reader refuses beyond its syntax (were 500s with a traceback)
    for body, words in ((b"[" * 100_000, "nested too deeply"), (b"1" * 5000, "not JSON")):
        response = client.post(
            "/api/paths", content=body, headers={"content-type": "application/json"}
        )
        refused(response, words)
    big = json.dumps({"csv": "x\n" + "1\n" * (api.LIMITS["body_bytes"] // 2 + 10)})
    refused(
        client.post("/api/ewa", content=big, headers={"content-type": "application/json"}),
        "over 512 KB",
    )


# --- averages -----------------------------------------------------------------------------------


def test_the_notes_three_day_example(client):
    example = post(client, "ewa", {}).json()["example"]
    assert example["temperatures"] == [20.0, 23.0, 17.0] and example["beta"] == 0.8
    v, expected = 0.0, [4.0, 7.8, 9.64]
    for t, x in enumerate(example["temperatures"], start=1):
        v = 0.8 * v + 0.2 * x
        assert example["plain"][t - 1] == pytest.approx(v) == pytest.approx(expected[t - 1])
        assert example["corrected"][t - 1] == pytest.approx(v / (1 - 0.8**t))
    assert [round(c, 2) for c in example["corrected"]] == [20.0, 21.67, 19.75]


def test_averages_of_a_csv_follow_the_recurrence(client):
    text = "day,temp\n1,10\n2,12\n3,9.5\n4,11\n"
    reply = post(client, "ewa", {"betas": [0.5, 0.9], "csv": text}).json()
    assert reply["name"] == "temp" and reply["series"] == [10, 12, 9.5, 11]
    for average in reply["averages"]:
        beta, v = average["beta"], 0.0
        assert average["window"] == pytest.approx(1 / (1 - beta))
        for t, x in enumerate(reply["series"], start=1):
            v = beta * v + (1 - beta) * x
            assert average["plain"][t - 1] == pytest.approx(v, rel=1e-12)
            assert average["corrected"][t - 1] == pytest.approx(v / (1 - beta**t), rel=1e-12)


BAD_EWA = [
    ({"csv": "day,temp\n1,20\n2,warm\n"}, ("line 3", "'warm'", "not a number")),
    ({"csv": "day,temp\n1,20\n2,21\n", "column": "rain"}, ("no column 'rain'", "day, temp")),
    ({"csv": "temp\n20\n"}, ("1 value", "at least 2")),
    ({"csv": ""}, ("no data rows",)),
    ({"csv": "/etc/passwd"}, ("no data rows",)),
    ({"csv": "a,b\nx,y\n"}, ("no column holds numbers",)),
    ({"csv": 42}, ("csv", "text")),
    ({"csv": "t\n" + "1\n" * (api.LIMITS["series"] + 5)}, ("more than", "rows")),
    # lone carriage returns (old Macs) are line breaks too: the cap was 15 times looser
    ({"csv": "t\r" + "1\r" * (api.LIMITS["series"] + 5)}, ("more than", "rows")),
    ({"betas": [1.0]}, ("betas[0]", "0.9999")),
    ({"betas": []}, ("betas", "1 to 6")),
    ({"days": 10**9}, ("days",)),
]


@pytest.mark.parametrize("body, words", BAD_EWA, ids=[str(i) for i in range(len(BAD_EWA))])
def test_bad_ewa_requests_are_refused_with_one_line(client, body, words):
    refused(post(client, "ewa", body), *words)


# --- schedules ----------------------------------------------------------------------------------


def test_the_notes_decays_follow_their_formulas(client):
    specs = [
        "step_decay:lr=0.1,gamma=0.5,step_size=200",
        "exponential_decay:lr=0.1,decay_rate=0.95,decay_steps=20",
        "inverse_time_decay:lr=0.1,decay_rate=1,decay_steps=50",
    ]
    formulas = [
        lambda t: 0.1 * 0.5 ** (t // 200),
        lambda t: 0.1 * 0.95 ** (t / 20),
        lambda t: 0.1 / (1 + t / 50),
    ]
    reply = post(client, "schedules", {"specs": specs, "steps": 1000}).json()
    for curve, formula in zip(reply["schedules"], formulas):
        assert curve["steps"] == list(range(1000))
        assert curve["lr"] == pytest.approx([formula(t) for t in range(1000)], rel=1e-12)


def test_long_schedules_are_sampled(client):
    reply = post(
        client, "schedules", {"specs": ["cosine_decay:lr=1,decay_steps=100000"], "steps": 100000}
    ).json()
    curve = reply["schedules"][0]
    assert len(curve["steps"]) == 1000 and curve["steps"][0] == 0 and curve["steps"][-1] == 99999
    t = curve["steps"][500]
    assert curve["lr"][500] == pytest.approx((1 + math.cos(math.pi * t / 100000)) / 2, rel=1e-12)


BAD_SCHEDULES = [
    ({"specs": ["steps_decay:lr=0.1"]}, ("unknown schedule", "step_decay")),
    ({"specs": ["reduce_on_plateau:lr=0.1"]}, ("reduce_on_plateau",)),
    ({"specs": ["step_decay:lr=0.1,gamma=0.5"]}, ("step_size",)),
    ({"specs": [""]}, ("specs[0]",)),
    ({"specs": []}, ("specs", "1 to 6")),
    ({"specs": ["constant:lr=0.1"], "steps": 10**7}, ("steps", "1000000")),
]


@pytest.mark.parametrize(
    "body, words", BAD_SCHEDULES, ids=[str(i) for i in range(len(BAD_SCHEDULES))]
)
def test_bad_schedule_requests_are_refused_with_one_line(client, body, words):
    refused(post(client, "schedules", body), *words)


# --- batch sizes --------------------------------------------------------------------------------


def test_batch_sizes_train_and_report_steps_and_seconds(client):
    pytest.importorskip("sklearn")
    reply = post(
        client,
        "batch",
        {
            "dataset": "iris",
            "batch_sizes": [8, None],
            "epochs": 2,
            "optimizer": {"name": "sgd", "settings": {"lr": 0.1}},
        },
    ).json()
    small, whole = reply["runs"]
    assert whole["label"].startswith("batch (all") and whole["steps_per_epoch"] == 1
    assert small["steps_per_epoch"] == math.ceil(int(whole["label"].split()[2].rstrip(")")) / 8)
    for run in (small, whole):
        assert run["step"][-1] == 2 * run["steps_per_epoch"]
        assert len(run["seconds"]) == len(run["train_loss"]) and run["seconds"] == sorted(
            run["seconds"]
        )
        assert run["train_loss"][-1] < run["train_loss"][0]


BAD_BATCH = [
    ({"dataset": "mnist"}, ("unknown dataset", "iris")),
    ({"batch_sizes": [0]}, ("batch_sizes[0]", ">= 1")),
    ({"batch_sizes": [1], "epochs": 20, "dataset": "digits"}, ("steps in all", "6000")),
    ({"epochs": 21}, ("epochs", "20")),
    ({"optimizer": {"name": "sgd", "settings": {"lr": -1}}}, ("lr",)),
]


@pytest.mark.parametrize("body, words", BAD_BATCH, ids=[str(i) for i in range(len(BAD_BATCH))])
def test_bad_batch_requests_are_refused_with_one_line(client, body, words):
    pytest.importorskip("sklearn")
    refused(post(client, "batch", body), *words)


# --- nothing from the files -----------------------------------------------------------------------


def test_no_request_opens_a_file(client, monkeypatch):
    def no_files(*args, **kwargs):
        raise AssertionError(f"a request opened a file: {args[:1]}")

    monkeypatch.setattr(builtins, "open", no_files)
    monkeypatch.setattr(io, "open", no_files)
    monkeypatch.setattr(pathlib.Path, "open", no_files)
    assert client.get("/api/catalog").status_code == 200
    for view, body in (
        ("surface", {"function": "himmelblau"}),
        ("paths", {"function": "rastrigin", "steps": 20, "optimizers": [{"name": "adam"}]}),
        ("ewa", {"csv": "t\n1\n2\n", "column": "../../etc/passwd"}),
        ("ewa", {"days": 30}),
        ("schedules", {"specs": ["constant:lr=0.1"]}),
    ):
        assert post(client, view, body).status_code in (200, 400)


def test_momentum_on_the_bowl_contracts_at_polyaks_rates(client):
    """The guide's reading of its momentum figure: on x^2/10 + 2 y^2 (L = 4, mu = 0.2) each
    path shrinks by a fixed factor per step, as Polyak's analysis of the quadratic gives:
    1 - lr mu for gradient descent along the shallow axis, sqrt(beta) for the heavy ball (at
    his beta and rate, and at the notes' beta = 0.9, where the eigenvalues are complex)."""
    L, mu = 4.0, 0.2
    beta = ((L**0.5 - mu**0.5) / (L**0.5 + mu**0.5)) ** 2
    polyak = {"lr": 4 / (L**0.5 + mu**0.5) ** 2, "momentum": beta, "form": "heavy_ball"}
    cases = [
        ("sgd", {"lr": 2 / (L + mu)}, 1 - 2 / (L + mu) * mu),
        ("momentum", polyak, beta**0.5),
        ("momentum", {"lr": 0.045, "momentum": 0.9, "form": "heavy_ball"}, 0.9**0.5),
    ]
    body = {
        "function": "quadratic_bowl",
        "steps": 400,
        "optimizers": [{"name": n, "settings": s} for n, s, _ in cases],
    }
    for path, (_, _, rate) in zip(post(client, "paths", body).json()["paths"], cases):
        distance = [math.hypot(x, y) for x, y in zip(path["x"], path["y"])]
        # the geometric mean factor over 200 steps, late enough that the slowest mode rules
        # (a double eigenvalue, Polyak's optimum, adds a factor t: (400/200)^(1/200) = 1.0035)
        assert (distance[400] / distance[200]) ** (1 / 200) == pytest.approx(rate, rel=0.01)

"""Fuzzing every optimizer's constructor with extreme hyperparameters (issue 13).

For every registered configuration (``registry.CASES``) and every argument its class takes,
each value of a fixed list (zeros, subnormals, the float range's ends, huge Python ints,
their negatives, NaN, Inf, bools, strings, None, sequences of the wrong length or content)
must either be refused with a TypeError/ValueError that names the argument and the value and
says what is expected, or be accepted and then take three steps on float32 and float64
parameters with parameters and gradients of ordinary size (|p|, |g| from 1e-3 to 1e3, and a
zero) that return and leave every parameter finite. Anything else (another exception, a NaN
or Inf parameter, an unclear message) is a finding.

The steps are bounded by construction (the checks refuse what would overflow, the rules
compute powers in floats); the fuzz runs in a subprocess only so that a regression that hangs
fails the test, after a generous limit, instead of stalling the suite.

Run as a script to see the counts and every finding:
``python tests/test_constructor_fuzz.py``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from case import accepted_arguments  # noqa: E402

_FLOAT64_MAX = torch.finfo(torch.float64).max
_FLOAT32_MAX = float(torch.finfo(torch.float32).max)
_MAGNITUDES = [
    0.5,
    1.0,
    5e-324,  # float64's smallest subnormal
    torch.finfo(torch.float64).tiny,
    1e-300,
    1e-45,  # float32's smallest subnormal, about
    float(torch.finfo(torch.float32).tiny),
    float(torch.finfo(torch.float32).eps),
    2.0**-32,
    2.0**16,
    2.0**32,
    2.0**32 * (1 + 2**-52),  # just past the largest scale
    18.3,
    1e7,
    1e18,
    1e30,
    1e100,
    1e300,
    1e308,
    _FLOAT32_MAX,
    _FLOAT64_MAX,
    10**7,
    10**18,
    120958022030832608,  # accepted as r by ScheduleFreeAdamW, then step() hung
    10**400,  # beyond the float range
]
#: every value tried for every argument
VALUES: list[Any] = [0, 1, 0.0, -0.0]
for _v in _MAGNITUDES:
    VALUES += [_v, -_v]
VALUES += [math.nan, math.inf, -math.inf, True, False, "0.1", "", None, [], 1j]
VALUES += [
    (),
    (0.5,),
    (0.5, 0.5, 0.5),
    [0.5, 0.5],
    (0.5, math.nan),
    (math.inf, 0.5),
    (1e308, 1e308),
    (0.5, 1e308),
    (1e-300, 0.5),
    (0.0, 0.0),
    (10**400, 0.5),
    (0.5, 10**18),
    (None, 0.5),
    ("a", 0.5),
    (1e308, 1e308, 1e308),
    (10**400, 0.0, 0.0),
]

STEPS = 3


def _tensors() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(parameter, gradient) pairs: float32 and float64, a matrix and a vector each, with
    magnitudes spread over 1e-3..1e3 and alternating signs.

    No gradient element is exactly 0: with ``eps=0`` (which torch accepts too) Adam-like rules
    then divide 0 by 0 there; see the report of issue 13."""
    out = []
    for dtype in (torch.float32, torch.float64):
        for shape in ((3, 4), (5,)):
            n = math.prod(shape)
            magnitude = torch.logspace(-3, 3, n, dtype=torch.float64)
            sign = torch.tensor([(-1.0) ** i for i in range(n)], dtype=torch.float64)
            p = (magnitude * sign).reshape(shape).to(dtype)
            g = (magnitude.flip(0) * sign.roll(1)).reshape(shape).to(dtype)
            out.append((p, g))
    return out


_BASE = _tensors()


def _clear(message: str, name: str, value: Any) -> bool:
    """Whether an error message names the argument and the value and says what is valid."""
    shown = [repr(value)]
    if isinstance(value, (tuple, list)):  # a group keeps a list as a tuple, as torch does
        shown += [repr(tuple(value))] + [repr(v) for v in value]
    # a check across arguments names them all: "Invalid nesterov=True with dampening=0.5";
    # torch's words name the argument after them: "Invalid learning rate: -0.5 (lr); ..."
    named = (
        f"Invalid {name}" in message
        or (message.startswith("Invalid") and f"{name}=" in message)
        or f" ({name})" in message
        or f" ({name}, " in message
        or f" ({name}[" in message
        or f" ({name}=" in message
    )
    says_what_is_valid = ("expected", "choose", "pass ", "needs", "only")
    return (
        named
        and any(text in message for text in shown)
        and any(word in message for word in says_what_is_valid)
    )


def try_one(cls: type, kwargs: dict[str, Any], name: str, value: Any) -> tuple[str, str]:
    """("error" | "finite" | "other", detail) for one constructor input."""
    pairs = [(p.clone().requires_grad_(), g) for p, g in _BASE]
    if name == "differentiable" and value is True:  # the step is recorded: not on leaves
        pairs = [(p * 1, g) for p, g in pairs]
    try:
        optimizer = cls([p for p, _ in pairs], **{**kwargs, name: value})
    except (TypeError, ValueError) as error:
        if _clear(str(error), name, value):
            return "error", ""
        return "other", f"unclear {type(error).__name__}: {error}"
    except RuntimeError as error:
        # Where the fused path cannot run (e.g. ATEN_CPU_CAPABILITY=default), fused=True is
        # refused for what the machine lacks, naming the argument and what to pass instead.
        if str(error).startswith("fused=True, but the fused path cannot run here"):
            return "error", ""
        if _clear(str(error), name, value):  # torch's type for conflicting dispatch choices
            return "error", ""
        return "other", f"constructor raised RuntimeError: {error}"
    except Exception as error:  # noqa: BLE001 - any other exception is a finding
        return "other", f"constructor raised {type(error).__name__}: {error}"
    try:
        for k in range(STEPS):
            for p, g in pairs:
                p.grad = g if k % 2 == 0 else -g
            optimizer.step()
            for p, _ in pairs:
                if not bool(torch.isfinite(p).all()):
                    return "other", f"non-finite {p.dtype} parameter after step {k + 1}"
    except Exception as error:  # noqa: BLE001
        return "other", f"step {k + 1} raised {type(error).__name__}: {str(error)[:300]}"
    return "finite", ""


def fuzz() -> dict[str, Any]:
    """Every registered configuration x every argument x every value: counts and findings."""
    import registry

    counts = {"inputs": 0, "clear errors": 0, "accepted and finite": 0, "anything else": 0}
    findings = []
    kind_to_count = {"error": "clear errors", "finite": "accepted and finite"}
    for case in registry.CASES:
        for name in sorted(accepted_arguments(case.cls)):
            for value in VALUES:
                kind, detail = try_one(case.cls, case.kwargs, name, value)
                counts["inputs"] += 1
                counts[kind_to_count.get(kind, "anything else")] += 1
                if kind == "other":
                    findings.append(f"{case.id}: {name}={value!r:.60}: {detail}")
    return {"counts": counts, "findings": findings}


def test_every_constructor_refuses_clearly_or_steps_finitely():
    """The fuzz, in a subprocess so that a hang fails after a generous limit."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, __file__, "--json"],
        capture_output=True,
        text=True,
        timeout=600,  # the fuzz takes well under a minute; only a hang reaches this
        env=env,
        cwd=HERE,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    counts, findings = result["counts"], result["findings"]
    summary = ", ".join(f"{key}: {n}" for key, n in counts.items())
    print(f"\nconstructor fuzz: {summary}")
    assert counts["inputs"] == counts["clear errors"] + counts["accepted and finite"] + len(
        findings
    )
    assert counts["clear errors"] > 0 and counts["accepted and finite"] > 0
    assert not findings, f"{summary}\n" + "\n".join(findings[:40])


if __name__ == "__main__":
    torch.set_num_threads(1)
    outcome = fuzz()
    if "--json" in sys.argv:
        print(json.dumps(outcome))
    else:
        print(outcome["counts"])
        print("\n".join(outcome["findings"]))

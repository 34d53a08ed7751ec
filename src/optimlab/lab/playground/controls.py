"""What the playground lets you set for each optimizer, and how it writes the rule and the code.

Each :class:`Knob` is one control on the page: a slider over a linear or a logarithmic range, a
toggle or a choice, bound to one constructor argument (``betas.1`` is the second element of the
tuple ``betas``). :data:`PLAYGROUND_OPTIMIZERS` lists, for every optimizer the page offers, its
knobs; the page builds its controls from this table and the server checks every value it is
sent against it, so the two never disagree.

:func:`update_rule` writes the update as the notes write it (LaTeX, for KaTeX), following the
variant the knobs select: epsilon inside or outside the root, bias correction on or off, the
averaged or the heavy-ball form of momentum. :func:`code_line` writes the one line of optimlab
that makes the same optimizer.

    >>> arguments({"lr": 0.01, "betas.0": 0.8, "betas.1": 0.999, "eps_inside_sqrt": True}, "adam")
    {'lr': 0.01, 'betas': (0.8, 0.999), 'eps_inside_sqrt': True}
    >>> code_line("adam", arguments({"lr": 0.01, "betas.0": 0.8, "eps_inside_sqrt": True}, "adam"))
    'optimlab.Adam(params, lr=0.01, betas=(0.8, 0.999), eps_inside_sqrt=True)'
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ...optim.registry import REGISTRY

__all__ = [
    "PLAYGROUND_OPTIMIZERS",
    "Knob",
    "arguments",
    "code_line",
    "defaults",
    "update_rule",
]


@dataclass(frozen=True)
class Knob:
    """One control: ``kind`` is ``"linear"`` or ``"log"`` (a slider from ``low`` to ``high``),
    ``"toggle"`` or ``"choice"`` (one of ``choices``)."""

    key: str
    label: str
    kind: str
    low: float = 0.0
    high: float = 1.0
    choices: tuple[str, ...] = ()

    def check(self, value: Any) -> Any:
        """``value`` if it is valid for this knob; ValueError naming it and the range if not."""
        if self.kind == "toggle":
            if not isinstance(value, bool):
                raise ValueError(f"{self.key} must be true or false, got {value!r}")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(
                    f"{self.key} must be one of {', '.join(self.choices)}, got {value!r}"
                )
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{self.key} must be a number, got {value!r}")
        if not (math.isfinite(value) and self.low <= value <= self.high):
            raise ValueError(f"{self.key} must be in [{self.low:g}, {self.high:g}], got {value!r}")
        return float(value)


def _beta(key: str, label: str, high: float = 0.9999) -> Knob:
    return Knob(key, label, "linear", 0.0, high)


def _eps(key: str = "eps") -> Knob:
    return Knob(key, "epsilon", "log", 1e-12, 1.0)


def _toggle(key: str) -> Knob:
    return Knob(key, key.replace("_", " "), "toggle")


_WEIGHT_DECAY = Knob("weight_decay", "weight decay", "linear", 0.0, 1.0)
_ADAM = (_beta("betas.0", "beta1 (momentum)"), _beta("betas.1", "beta2 (RMSprop)"), _eps())

#: The learning rate every optimizer takes: a logarithmic slider.
LR = Knob("lr", "learning rate", "log", 1e-6, 100.0)

#: Every optimizer the page offers, with its knobs besides the learning rate. (Muon and
#: Adafactor treat matrices apart from vectors; on the page's one 2-vector they are AdamW and
#: an unfactored RMSprop, so they are left out.)
PLAYGROUND_OPTIMIZERS: dict[str, tuple[Knob, ...]] = {
    "sgd": (_beta("momentum", "momentum"), _toggle("nesterov"), _WEIGHT_DECAY),
    "momentum": (
        _beta("momentum", "beta"),
        Knob("form", "form", "choice", choices=("ema", "heavy_ball")),
        _toggle("nesterov"),
        _toggle("bias_correction"),
    ),
    "rmsprop": (
        _beta("alpha", "beta (alpha)"),
        _eps(),
        _toggle("eps_inside_sqrt"),
        _toggle("centered"),
        _beta("momentum", "momentum"),
    ),
    "adam": (*_ADAM, _toggle("bias_correction"), _toggle("eps_inside_sqrt"), _toggle("amsgrad")),
    "adamw": (*_ADAM, _WEIGHT_DECAY, _toggle("bias_correction"), _toggle("eps_inside_sqrt")),
    "nadam": _ADAM,
    "radam": _ADAM,
    "adamax": _ADAM,
    "lion": (_beta("betas.0", "beta1"), _beta("betas.1", "beta2")),
    "ademamix": (
        _beta("betas.0", "beta1"),
        _beta("betas.1", "beta2"),
        _beta("betas.2", "beta3 (slow)", 0.99999),
        Knob("alpha", "alpha (slow weight)", "linear", 0.0, 20.0),
    ),
    "adagrad": (_eps(), Knob("initial_accumulator_value", "initial sum", "linear", 0.0, 10.0)),
    "adadelta": (_beta("rho", "rho"), _eps()),
    "rprop": (
        Knob("etas.0", "eta minus", "linear", 0.01, 0.99),
        Knob("etas.1", "eta plus", "linear", 1.01, 3.0),
    ),
    "asgd": (Knob("lambd", "lambda", "log", 1e-8, 1.0), Knob("alpha", "alpha", "linear", 0, 1)),
    "lamb": _ADAM,
    "lars": (_beta("momentum", "momentum"), Knob("trust_coefficient", "trust", "log", 1e-5, 1)),
    "schedule_free_adamw": (_beta("betas.0", "beta1"), _beta("betas.1", "beta2"), _eps()),
    "schedule_free_sgd": (_beta("momentum", "momentum"),),
    "prodigy": (
        _beta("betas.0", "beta1"),
        _beta("betas.1", "beta2"),
        Knob("d0", "d0", "log", 1e-9, 1),
    ),
}


def _signature_defaults(name: str) -> dict[str, Any]:
    parameters = inspect.signature(REGISTRY[name].cls.__init__).parameters
    return {k: p.default for k, p in parameters.items() if p.default is not inspect.Parameter.empty}


def defaults(name: str) -> dict[str, Any]:
    """The class's defaults for each knob of ``name``, by knob key (``betas.0``: 0.9, ...)."""
    found = _signature_defaults(name)
    values: dict[str, Any] = {"lr": found["lr"]}
    for knob in PLAYGROUND_OPTIMIZERS[name]:
        base, _, index = knob.key.partition(".")
        value = found[base]
        values[knob.key] = value[int(index)] if index else value
    return values


def arguments(values: dict[str, Any], name: str) -> dict[str, Any]:
    """Constructor arguments from knob values (missing knobs take the class's defaults)."""
    knobs = {"lr": LR, **{k.key: k for k in PLAYGROUND_OPTIMIZERS[name]}}
    unknown = sorted(set(values) - set(knobs))
    if unknown:
        raise ValueError(
            f"{name} has no setting {unknown[0]!r}; its settings are: {', '.join(knobs)}"
        )
    merged = {**defaults(name), **{k: knobs[k].check(v) for k, v in values.items()}}
    found = _signature_defaults(name)
    result: dict[str, Any] = {}
    for key, value in merged.items():
        base, _, index = key.partition(".")
        if index:
            current = list(result.get(base, found[base]))
            current[int(index)] = value
            result[base] = tuple(current)
        else:
            result[key] = value
    return result


def code_line(name: str, args: dict[str, Any]) -> str:
    """``optimlab.Adam(params, lr=0.01, ...)``: the arguments that differ from the defaults."""
    found = _signature_defaults(name)
    shown = [
        f"{key}={_literal(value)}"
        for key, value in args.items()
        if key == "lr" or value != found.get(key)
    ]
    return f"optimlab.{REGISTRY[name].cls.__name__}(params, {', '.join(shown)})"


def _literal(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_literal(v) for v in value) + ")"
    return repr(value)


# --- the update rules, as the notes write them ----------------------------------------------

_GRAD = r"g_t = \nabla f(w_{t-1})"


def _decay(args: dict[str, Any]) -> str:
    return r" + \lambda w_{t-1}" if args.get("weight_decay") else ""


def _sgd(a: dict[str, Any]) -> list[str]:
    if not a["momentum"]:
        return [_GRAD + _decay(a), r"w_t = w_{t-1} - \eta\, g_t"]
    step = r"g_t + \mu b_t" if a["nesterov"] else "b_t"
    return [_GRAD + _decay(a), r"b_t = \mu b_{t-1} + g_t", rf"w_t = w_{{t-1}} - \eta\,({step})"]


def _momentum(a: dict[str, Any]) -> list[str]:
    at = r"g_t = \nabla f\big(w_{t-1} + \beta (w_{t-1} - w_{t-2})\big)" if a["nesterov"] else _GRAD
    if a["form"] == "heavy_ball":
        return [at, r"w_t = w_{t-1} - \eta\, g_t + \beta\,(w_{t-1} - w_{t-2})"]
    step = r"\frac{v_t}{1 - \beta^t}" if a["bias_correction"] else "v_t"
    return [at, r"v_t = \beta v_{t-1} + (1 - \beta)\, g_t", rf"w_t = w_{{t-1}} - \eta\, {step}"]


def _root(v: str, a: dict[str, Any]) -> str:
    return (
        rf"\sqrt{{{v} + \epsilon}}"
        if a["eps_inside_sqrt"]
        else rf"\left(\sqrt{{{v}}} + \epsilon\right)"
    )


def _rmsprop(a: dict[str, Any]) -> list[str]:
    lines = [_GRAD, r"s_t = \alpha s_{t-1} + (1 - \alpha)\, g_t^2"]
    v = "s_t"
    if a["centered"]:
        lines.append(r"\bar g_t = \alpha \bar g_{t-1} + (1 - \alpha)\, g_t")
        v = r"s_t - \bar g_t^2"
    if a["momentum"]:
        lines += [
            rf"b_t = \mu b_{{t-1}} + \frac{{g_t}}{{{_root(v, a)}}}",
            r"w_t = w_{t-1} - \eta\, b_t",
        ]
    else:
        lines.append(rf"w_t = w_{{t-1}} - \eta\, \frac{{g_t}}{{{_root(v, a)}}}")
    return lines


def _adam(a: dict[str, Any]) -> list[str]:
    lines = [
        _GRAD + ("" if a.get("decoupled", False) else _decay(a)),
        r"m_t = \beta_1 m_{t-1} + (1 - \beta_1)\, g_t",
        r"v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2",
    ]
    m, v = "m_t", "v_t"
    if a["bias_correction"]:
        lines.append(
            r"\hat m_t = \frac{m_t}{1 - \beta_1^t},\quad \hat v_t = \frac{v_t}{1 - \beta_2^t}"
        )
        m, v = r"\hat m_t", r"\hat v_t"
    if a.get("amsgrad"):
        lines.append(rf"\tilde v_t = \max(\tilde v_{{t-1}}, {v})")
        v = r"\tilde v_t"
    shrink = r" - \eta \lambda w_{t-1}" if a.get("decoupled") and a.get("weight_decay") else ""
    lines.append(rf"w_t = w_{{t-1}} - \eta\, \frac{{{m}}}{{{_root(v, a)}}}{shrink}")
    return lines


_FIXED: dict[str, list[str]] = {
    "nadam": [
        r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2",
        r"w_t = w_{t-1} - \eta\, \frac{\mu_{t+1} m_t / (1 - \prod_{i \le t+1} \mu_i)"
        r" + (1 - \mu_t) g_t / (1 - \prod_{i \le t} \mu_i)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}",
    ],
    "radam": [
        r"m_t, v_t \text{ as Adam},\quad \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t}",
        r"w_t = w_{t-1} - \eta\, \hat m_t \cdot \begin{cases} r_t / (\sqrt{\hat v_t} + \epsilon)"
        r" & \rho_t > 5 \\ 1 & \text{otherwise} \end{cases}",
    ],
    "adamax": [
        r"m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t,\quad u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)",
        r"w_t = w_{t-1} - \frac{\eta}{1 - \beta_1^t} \frac{m_t}{u_t}",
    ],
    "lion": [
        r"w_t = w_{t-1} - \eta\, \operatorname{sign}\big(\beta_1 m_{t-1} + (1 - \beta_1) g_t\big)",
        r"m_t = \beta_2 m_{t-1} + (1 - \beta_2) g_t",
    ],
    "ademamix": [
        r"m^{(1)}_t = \beta_1 m^{(1)}_{t-1} + (1 - \beta_1) g_t,\quad"
        r" m^{(2)}_t = \beta_3 m^{(2)}_{t-1} + (1 - \beta_3) g_t",
        r"w_t = w_{t-1} - \eta\, \frac{\hat m^{(1)}_t + \alpha m^{(2)}_t}{\sqrt{\hat v_t} + \epsilon}",
    ],
    "adagrad": [
        r"s_t = s_{t-1} + g_t^2",
        r"w_t = w_{t-1} - \eta\, \frac{g_t}{\sqrt{s_t} + \epsilon}",
    ],
    "adadelta": [
        r"s_t = \rho s_{t-1} + (1 - \rho) g_t^2,\quad"
        r" \Delta_t = \frac{\sqrt{d_{t-1} + \epsilon}}{\sqrt{s_t + \epsilon}}\, g_t",
        r"d_t = \rho d_{t-1} + (1 - \rho) \Delta_t^2,\quad w_t = w_{t-1} - \eta\, \Delta_t",
    ],
    "rprop": [
        r"\eta_t = \begin{cases} \eta_{t-1} \eta^+ & g_t g_{t-1} > 0 \\"
        r" \eta_{t-1} \eta^- & g_t g_{t-1} < 0 \\ \eta_{t-1} & \text{otherwise} \end{cases}",
        r"w_t = w_{t-1} - \eta_t \operatorname{sign}(g_t)",
    ],
    "asgd": [
        r"\eta_t = \frac{\eta}{(1 + \lambda \eta t)^\alpha},\quad"
        r" w_t = (1 - \lambda \eta_t)\, w_{t-1} - \eta_t g_t",
        r"\bar w_t = \text{average of } w \text{ from step } t_0",
    ],
    "lamb": [
        r"u_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon} + \lambda w_{t-1}\quad(\text{Adam's step})",
        r"w_t = w_{t-1} - \eta\, \frac{\lVert w_{t-1} \rVert}{\lVert u_t \rVert}\, u_t",
    ],
    "lars": [
        r"\eta^{\text{local}} = \tau \frac{\lVert w \rVert}{\lVert g_t \rVert + \lambda \lVert w \rVert}",
        r"b_t = \mu b_{t-1} + \eta\, \eta^{\text{local}} (g_t + \lambda w_{t-1}),\quad w_t = w_{t-1} - b_t",
    ],
    "schedule_free_adamw": [
        r"y_t = (1 - \beta_1) z_t + \beta_1 x_t,\quad g_t = \nabla f(y_t)",
        r"z_{t+1} = z_t - \eta\, \frac{g_t}{\sqrt{\hat v_t} + \epsilon},\quad"
        r" x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}",
    ],
    "schedule_free_sgd": [
        r"y_t = (1 - \beta) z_t + \beta x_t,\quad g_t = \nabla f(y_t)",
        r"z_{t+1} = z_t - \eta\, g_t,\quad x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}",
    ],
    "prodigy": [
        r"\hat d_t = \frac{\sum_i d_i \langle g_i, w_0 - w_i \rangle}{\lVert s_t \rVert_1},"
        r"\quad d_t = \max(d_{t-1}, \hat d_t)",
        r"w_t = w_{t-1} - \eta\, d_t \frac{m_t}{\sqrt{v_t} + d_t \epsilon}\quad(\text{Adam with step } d_t)",
    ],
}

_RULES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "sgd": _sgd,
    "momentum": _momentum,
    "rmsprop": _rmsprop,
    "adam": _adam,
    "adamw": lambda a: _adam({**a, "decoupled": True}),
}


def update_rule(name: str, args: dict[str, Any]) -> list[str]:
    """The update of ``name`` with ``args``, one LaTeX line per equation (``eta`` is ``lr``)."""
    full = {**_signature_defaults(name), **args}
    rule = _RULES.get(name)
    return rule(full) if rule else list(_FIXED[name])


def catalog_entry(name: str) -> dict[str, Any]:
    """What the page needs to build the controls of ``name``."""
    entry = REGISTRY[name]
    return {
        "name": name,
        "title": entry.title,
        "about": entry.about,
        "family": entry.family,
        "knobs": [asdict(LR)] + [asdict(k) for k in PLAYGROUND_OPTIMIZERS[name]],
        "defaults": defaults(name),
    }

"""The optimizers the lab compares: an optimlab class plus the arguments that make it a variant.

A :class:`Contender` is one line of the notes: "momentum, heavy-ball form" is
``Momentum(form="heavy_ball")``, "Adam without bias correction" is
``Adam(bias_correction=False)``. :data:`CONTENDERS` names them; :data:`NOTES_CONTENDERS` are the
ones the notes teach, which ``optimlab compare`` runs by default.

Anything else is a spec, ``"name:key=value,key=value"``, whose name is a contender (its
arguments are kept and the spec's override them) or an entry of :data:`optimlab.OPTIMIZERS`.
Values are numbers, ``true``/``false``, words, or lists with ``/`` (``betas=0.9/0.99``). A spec
that sets ``lr`` fixes the learning rate; otherwise the lab tunes it.

    >>> c = parse_contender("adam:betas=0.9/0.99,amsgrad=true")
    >>> c.name, c.optimizer, dict(c.arguments)
    ('adam:betas=0.9/0.99,amsgrad=true', 'adam', {'betas': (0.9, 0.99), 'amsgrad': True})
    >>> parse_contender("nesterov:lr=0.01").lr
    0.01
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

import optimlab
from optimlab.optim.registry import REGISTRY

__all__ = [
    "CONTENDERS",
    "GROUPS",
    "NOTES_CONTENDERS",
    "Contender",
    "parse_contender",
    "parse_contender_list",
    "valid_contender_names",
]


@dataclass(frozen=True)
class Contender:
    """An optimizer of :data:`optimlab.OPTIMIZERS` with fixed arguments, under one name."""

    name: str
    title: str
    optimizer: str
    arguments: tuple[tuple[str, Any], ...] = ()
    about: str = field(default="", compare=False)

    @property
    def lr(self) -> float | None:
        """The learning rate the spec fixed, or None when the lab should tune it."""
        return dict(self.arguments).get("lr")

    def build(self, params: Iterable[torch.Tensor], lr: float | None = None) -> Any:
        """The optimizer over ``params``; ``lr`` is used unless the spec fixed one."""
        kwargs = dict(self.arguments)
        if lr is not None and "lr" not in kwargs:
            kwargs["lr"] = lr
        return optimlab.OPTIMIZERS[self.optimizer](params, **kwargs)

    def describe(self) -> str:
        """``Adam(bias_correction=False)``: the call this contender makes, without lr."""
        cls = optimlab.OPTIMIZERS[self.optimizer].__name__
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments)
        return f"{cls}({args})"


def _contender(name: str, title: str, optimizer: str, about: str, **arguments: Any) -> Contender:
    return Contender(name, title, optimizer, tuple(arguments.items()), about)


#: The lab's variants of the notes' optimizers, each listed after the optimizer it varies.
_VARIANTS: dict[str, tuple[Contender, ...]] = {
    "momentum": (
        _contender(
            "heavy_ball",
            "Momentum (heavy ball)",
            "momentum",
            "adds beta times the previous step (beta=0.9)",
            form="heavy_ball",
        ),
        _contender(
            "nesterov",
            "Nesterov",
            "momentum",
            "heavy ball with the gradient taken at the look-ahead point",
            form="heavy_ball",
            nesterov=True,
        ),
    ),
    "adam": (
        _contender(
            "adam_no_bias_correction",
            "Adam, no bias correction",
            "adam",
            "Adam with the zero-started averages used as they are",
            bias_correction=False,
        ),
    ),
}

#: Every named contender: each optimizer of the registry (:mod:`optimlab.optim.registry`) in
#: its order, with its defaults, followed by the lab's variants of it.
CONTENDERS: dict[str, Contender] = {
    c.name: c
    for entry in REGISTRY.values()
    for c in (
        _contender(entry.name, entry.title, entry.name, entry.about),
        *_VARIANTS.get(entry.name, ()),
    )
}

#: The contenders of the notes, run by ``optimlab compare`` and ``optimlab landscape``.
NOTES_CONTENDERS: tuple[str, ...] = (
    "sgd",
    "momentum",
    "heavy_ball",
    "nesterov",
    "rmsprop",
    "adam",
    "adam_no_bias_correction",
)


def valid_contender_names() -> list[str]:
    """Names a spec may start with: the contenders (every optimizer, and the variants)."""
    return list(CONTENDERS)


#: words that stand for several contenders in a list: the notes' set, the optimizers beyond the
#: notes (issue 8, opt-in), and everything optimlab has
GROUPS: dict[str, tuple[str, ...]] = {
    "notes": NOTES_CONTENDERS,
    "beyond": tuple(name for name, entry in REGISTRY.items() if entry.family == "beyond"),
    "all": tuple(valid_contender_names()),
}


def _parse_value(text: str) -> Any:
    if "/" in text:
        return tuple(_parse_value(part.strip()) for part in text.split("/"))
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text  # a word: a choice such as form=heavy_ball, checked by the optimizer itself


def _argument_names(cls: type) -> list[str]:
    # Walk up the classes while __init__ forwards **kwargs (AdamW -> Adam), so every argument
    # the optimizer really accepts counts as valid.
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[2:]
        names += [p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return list(dict.fromkeys(n for n in names if n != "foreach"))


def parse_contender(spec: str) -> Contender:
    """The contender a spec names: ``"adam"`` or ``"adam:lr=0.01,betas=0.9/0.99"``.

    Raises ValueError naming the bad part: an unknown name (listing the valid ones), an
    argument the optimizer does not take (listing those it does), or a value it refuses.
    """
    text = spec.strip()
    name, _, rest = text.partition(":")
    name = name.strip()
    if name not in CONTENDERS:
        valid = ", ".join(valid_contender_names())
        raise ValueError(f"unknown optimizer {name!r}; valid names: {valid}")
    base = CONTENDERS[name]
    if not rest.strip():
        return base
    cls = optimlab.OPTIMIZERS[base.optimizer]
    accepted = _argument_names(cls)
    arguments = dict(base.arguments)
    given: set[str] = set()
    for item in rest.split(","):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or not key or not value:
            raise ValueError(f"optimizer spec {spec!r}: expected key=value, got {item.strip()!r}")
        if key in given:  # (not the last one silently)
            raise ValueError(f"optimizer spec {spec!r}: argument {key!r} given twice")
        given.add(key)
        if key == "foreach":
            raise ValueError(
                f"optimizer spec {spec!r}: 'foreach' says how a step is computed, not what, "
                "and the lab leaves that to optimlab"
            )
        if key not in accepted:
            raise ValueError(
                f"optimizer spec {spec!r}: {cls.__name__} has no argument {key!r}; "
                f"its arguments are: {', '.join(accepted)}"
            )
        arguments[key] = _parse_value(value)
    contender = Contender(text, text, base.optimizer, tuple(arguments.items()), base.about)
    try:  # build once on a dummy tensor so a bad value fails here, naming the spec
        contender.build([torch.zeros(1, requires_grad=True)], lr=1e-3)
    except (TypeError, ValueError) as error:
        raise ValueError(f"optimizer spec {spec!r}: {error}") from None
    return contender


def parse_contender_list(text: str) -> list[Contender]:
    """Contenders from a comma-separated list; a spec's own ``key=value`` items may follow it.

    The words of :data:`GROUPS` stand for several: ``notes`` (the default set), ``beyond``
    (every optimizer beyond the notes) and ``all`` (both, and every other named contender).

    ``"sgd,adam:lr=0.01,eps=1e-7,rmsprop"`` is three contenders: an item with ``=`` but no
    ``:`` continues the spec before it, since names never contain ``=``.
    """
    specs: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if "=" in item and ":" not in item and specs:
            specs[-1] += "," + item
        else:
            specs.append(item)
    if not specs:
        raise ValueError("expected at least one optimizer name")
    expanded: list[str] = []
    for spec in specs:
        expanded += list(GROUPS[spec]) if spec in GROUPS else [spec]
    contenders = [parse_contender(s) for s in expanded]
    names = [c.name for c in contenders]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"optimizer {repeated[0]!r} is listed twice")
    return contenders

"""How an optimizer class calls its rule: every argument by name, none mapped by hand.

A rule of :mod:`optimlab.core` is ``rule(ops, params, grads, *buffers, **keywords)``. Its
buffers are named as plurals of the state entries they are (``exp_avgs`` are the ``exp_avg``
of each parameter, ``velocities`` its ``velocity``) and come from the bucket's buffers, empty
where this configuration keeps none (Adam's ``max_exp_avg_sqs`` without amsgrad). Each keyword
is taken from the *arguments* of the step: the group's hyperparameters, the step count ``step``
and any state entries the class declares (:attr:`Optimizer._state_arguments`); a keyword no
group key names is computed by the class's ``_derived`` (``beta1`` is ``betas[0]``).

>>> from optimlab.core import ops, rules
>>> import torch
>>> w, g, v = torch.ones(2), torch.ones(2), torch.zeros(2)
>>> call_rule(rules.heavy_ball_momentum, ops.FOREACH, [w], [g], {"last_step": [v]},
...           {"lr": 0.5, "beta": 0.9, "nesterov": False, "weight_decay": 0.0,
...            "maximize": False}, {})
>>> w.tolist()
[0.5, 0.5]
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

#: a keyword a rule takes that no group key names: computed from the step's arguments
Derived = Mapping[str, Callable[[Mapping[str, Any]], Any]]


def singular(plural: str) -> str:
    """The state entry a rule's buffer argument holds: ``exp_avgs`` -> ``exp_avg``.

    >>> singular("exp_avg_sqs"), singular("velocities"), singular("zs")
    ('exp_avg_sq', 'velocity', 'z')
    """
    if plural.endswith("ies"):
        return plural[:-3] + "y"
    if not plural.endswith("s"):
        raise TypeError(f"a rule's buffer argument is a plural (exp_avgs), got {plural!r}")
    return plural[:-1]


@functools.cache
def signature(rule: Callable[..., Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The state entries a rule's buffer arguments hold, and its keyword arguments."""
    parameters = list(inspect.signature(rule).parameters.values())[3:]  # ops, params, grads
    buffers = tuple(singular(p.name) for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD)
    keywords = tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY)
    return buffers, keywords


def call_rule(
    rule: Callable[..., Any],
    ops: Any,
    params: list[Tensor],
    grads: list[Tensor],
    buffers: Mapping[str, list[Tensor]],
    arguments: Mapping[str, Any],
    derived: Derived,
) -> Any:
    """``rule`` applied to one bucket, its buffers and keywords taken by name (see above).

    The binding is worked out once per ``arguments`` (about 3 µs) and kept in it, under the
    rule itself (a key no hyperparameter can have): the per-tensor path calls the rule once per
    tensor with the same arguments.
    """
    bound = arguments.get(rule)  # type: ignore[call-overload]
    if bound is None:
        bound = _bind(rule, arguments, derived)
        if isinstance(arguments, dict):
            arguments[rule] = bound  # type: ignore[index]
    names, values = bound
    return rule(ops, params, grads, *[buffers.get(n, []) for n in names], **values)


def _bind(
    rule: Callable[..., Any], arguments: Mapping[str, Any], derived: Derived
) -> tuple[tuple[str, ...], dict[str, Any]]:
    names, keywords = signature(rule)
    try:
        return names, {
            k: arguments[k] if k in arguments else derived[k](arguments) for k in keywords
        }
    except KeyError as error:
        raise TypeError(
            f"{rule.__name__} takes {error.args[0]!r}, which is neither a hyperparameter of the "
            "group nor derived by the optimizer (_derived)"
        ) from None


def item(key: str, index: int | None = None) -> Callable[[Mapping[str, Any]], Any]:
    """A derived argument: the hyperparameter ``key`` under another name, or entry ``index``
    of it (``beta1`` is ``item("betas", 0)``)."""
    if index is None:
        return lambda arguments: arguments[key]
    return lambda arguments: arguments[key][index]


def constant(value: Any) -> Callable[[Mapping[str, Any]], Any]:
    """A derived argument the class fixes (AdamW's ``decoupled_weight_decay=True``)."""
    return lambda arguments: value


#: ``beta1``, ``beta2``, ``beta3`` from ``betas``: every optimizer with averages derives these
BETAS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    f"beta{i + 1}": item("betas", i) for i in range(3)
}

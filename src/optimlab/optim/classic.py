"""Adagrad, Adadelta, Rprop and ASGD: drop-in optimizers beyond the notes, from the core's parts.

Each is numerically identical to its ``torch.optim`` namesake (same arguments, same defaults,
same state entries), with optimlab's validation, non-finite gradient policy and fused path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core import classic as rules
from ..fused.device_scalars import DeviceScalar
from .base import Optimizer
from .binding import item
from .checks import (
    LARGEST_SCALE,
    boolean,
    bounded,
    hyperparameters,
    invalid,
    non_negative,
    real_number,
    sparse_grad_allowed,
    tensor_number,
)
from .state import new_step, step_count, step_dtype

# --- checks of this family's arguments -----------------------------------------------------


def closed_unit_interval(name: str, value: Any) -> None:
    """A decay rate that may be 1 (torch accepts it): 0 <= value <= 1."""
    if not 0.0 <= real_number(name, value) <= 1.0:
        raise ValueError(f"{invalid(name, value)}; expected a number in [0, 1]")


def non_negative_any_size(name: str, value: Any) -> None:
    """A finite number >= 0 of any size: ASGD's ``t0`` (a step count; one beyond the run never
    starts the average) and ``alpha`` (an exponent; a power beyond float64 makes the step size
    its limit, 0)."""
    if real_number(name, value) < 0:
        raise ValueError(f"{invalid(name, value)}; expected a finite number >= 0")


def _pair(name: str, value: Any, meaning: str) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{invalid(name, value)}; expected a pair {meaning}")
    return real_number(f"{name}[0]", value[0]), real_number(f"{name}[1]", value[1])


def rprop_etas(name: str, value: Any) -> None:
    """Rprop's factors: the step size shrinks by the first and grows by the second."""
    etaminus, etaplus = _pair(name, value, "(etaminus, etaplus)")
    if not 0.0 < etaminus < 1.0 < etaplus:
        raise ValueError(  # torch's words first
            f"Invalid eta values: {etaminus}, {etaplus} ({name}={tuple(value)!r}); expected a "
            "pair (etaminus, etaplus) with 0 < etaminus < 1 < etaplus"
        )
    bounded(f"{name}[1]", value[1], 0.0, LARGEST_SCALE)


def rprop_step_sizes(name: str, value: Any) -> None:
    """Rprop's bounds on the step sizes: 0 <= min <= max. torch allows min = 0, so does this
    check; a step size that shrinks to 0 stays there (0 * etaplus is 0)."""
    low, high = _pair(name, value, "(min, max)")
    if not 0.0 <= low <= high:
        raise ValueError(f"{invalid(name, value)}; expected a pair (min, max) with 0 <= min <= max")
    bounded(f"{name}[1]", value[1], 0.0, LARGEST_SCALE)


# --- Adagrad -------------------------------------------------------------------------------


class Adagrad(Optimizer):
    r"""Adagrad; numerically identical to :class:`torch.optim.Adagrad` (same arguments, defaults).

    Each weight's step is divided by the root of the sum of all its squared gradients so far
    (Duchi, Hazan and Singer, 2011): weights with large or frequent gradients take small
    steps, rare ones large steps; the step sizes only ever shrink. Update at step ``t``, with
    ``g`` the gradient (negated when ``maximize``) plus ``weight_decay * w``::

        s = s + g**2                           s starts at initial_accumulator_value
        lr_t = lr / (1 + (t - 1) * lr_decay)
        w = w - lr_t * g / (sqrt(s) + eps)

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.01.
        lr_decay: >= 0, the rate falls as ``lr / (1 + (t - 1) * lr_decay)``. Default 0.
        weight_decay: >= 0; ``weight_decay * w`` is added to ``g``. Default 0.
        initial_accumulator_value: >= 0, where the sum of squares starts. Default 0.
        eps: >= 0, added to the root. Default 1e-10.
        maximize, foreach, fused, differentiable, nonfinite_grads, state_dtype,
            stochastic_rounding: as for :class:`optimlab.Adam` (how the step is computed, never
            what; the non-finite policy; mixed precision).

    It is RMSprop with the average replaced by a sum, so its steps keep shrinking like
    ``1/sqrt(t)``: good for convex problems and sparse features, often too cautious late in
    training a network. The state is torch's: ``step`` and ``sum``. Sparse (COO) gradients, as
    ``nn.Embedding(sparse=True)`` makes, are taken as torch takes them, bitwise
    (:func:`optimlab.core.classic.adagrad_sparse`), except with ``weight_decay`` or
    ``fused=True``, which torch refuses too (RuntimeError).

    How the step is computed (``fused``, ``foreach``), ``nonfinite_grads`` and mixed
    precision (``state_dtype``, ``stochastic_rounding``) are as for
    :class:`optimlab.Adam`.

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        >>> opt = optimlab.Adagrad([w], lr=0.1)
        >>> for _ in range(2):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); _ = opt.step()
        >>> [round(x, 6) for x in w.tolist()]   # steps of 0.1, then 0.1 * 1.8 / sqrt(2**2 + 1.8**2)
        [0.833104, -1.831125]
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "lr_decay": non_negative,
        "weight_decay": non_negative,
        "initial_accumulator_value": non_negative,
        "eps": non_negative,
        "maximize": boolean,
    }
    _rule = staticmethod(rules.adagrad)
    _supports_sparse_grads = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        differentiable: bool = False,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)
        # torch's Adagrad makes its state here, not at the first step (share_memory needs it)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p].update(self._new_state(p, group))

    def share_memory(self) -> None:
        """Move the sums of squares into shared memory (``Tensor.share_memory_``), as torch's
        Adagrad does, for processes that step one model together (``torch.multiprocessing``,
        Hogwild)."""
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["sum"].share_memory_()

    def _buffer_names(self, group):
        return ("sum",)

    def _init_state(self, p, group):
        value = group["initial_accumulator_value"]
        # A complex weight is a pair of reals: both parts start at the value, as in torch.
        fill = complex(value, value) if p.is_complex() else value
        return {
            "step": new_step(),
            "sum": torch.full_like(p, fill, memory_format=torch.preserve_format),
        }

    def _refuse_sparse(self, grad):
        sparse_grad_allowed(self, grad)

    def _step_sparse(self, arguments, p, state):
        rules.adagrad_sparse(
            p,
            p.grad,
            state["sum"],
            step=arguments["step"],
            lr=arguments["lr"],
            lr_decay=arguments["lr_decay"],
            eps=arguments["eps"],
            maximize=arguments["maximize"],
        )


# --- Adadelta ------------------------------------------------------------------------------


class Adadelta(Optimizer):
    r"""Adadelta; numerically identical to :class:`torch.optim.Adadelta` (same arguments, defaults).

    Zeiler (2012, "ADADELTA: An Adaptive Learning Rate Method", Algorithm 1): RMSprop whose
    numerator is not a learning rate but the root mean square of the past steps themselves,
    so the step has the units of the weights and needs no tuned step size. Update, with ``g``
    the gradient (negated when ``maximize``) plus ``weight_decay * w``::

        s = rho * s + (1 - rho) * g**2                 average of squared gradients
        d = sqrt(u + eps) / sqrt(s + eps) * g          RMS of past steps / RMS of gradients
        u = rho * u + (1 - rho) * d**2                 average of squared steps
        w = w - lr * d

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 1.0.
        rho: in [0, 1], the decay of both averages. Default 0.9.
        eps: >= 0, inside both roots. Default 1e-6.
        weight_decay: >= 0; ``weight_decay * w`` is added to ``g``. Default 0.
        maximize, foreach, fused, capturable, differentiable, nonfinite_grads, state_dtype,
            stochastic_rounding: as for :class:`optimlab.Adam` (how the step is computed, never
            what; the non-finite policy; mixed precision).

    ``lr`` scales the step after the fact; the paper's rule is ``lr = 1`` (the default). The
    first steps are about ``sqrt(eps)`` long and grow as ``u`` fills, so ``eps`` sets the
    starting pace. ``rho`` may be 1, as torch allows (the averages then never move and the
    step is ``lr * g``). The state is torch's: ``step``, ``square_avg`` (``s``) and
    ``acc_delta`` (``u``).

    How the step is computed (``fused``, ``foreach``), ``nonfinite_grads`` and mixed
    precision (``state_dtype``, ``stochastic_rounding``) are as for
    :class:`optimlab.Adam`.

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        >>> opt = optimlab.Adadelta([w], eps=1e-2)
        >>> opt.zero_grad(); (w ** 2).sum().backward(); _ = opt.step()
        >>> [round(x, 6) for x in w.tolist()]   # sqrt(eps) / sqrt(0.1 g**2 + eps) * g
        [0.687652, -1.684756]
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "rho": closed_unit_interval,
        "eps": non_negative,
        "weight_decay": non_negative,
        "maximize": boolean,
    }
    _rule = staticmethod(rules.adadelta)

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _buffer_names(self, group):
        return ("square_avg", "acc_delta")


# --- Rprop ---------------------------------------------------------------------------------


class Rprop(Optimizer):
    r"""Rprop; numerically identical to :class:`torch.optim.Rprop` (same arguments, defaults).

    Resilient backpropagation (Riedmiller and Braun, 1993), in the iRprop- form torch uses
    (Igel and Hüsken, 2000): only the sign of each gradient is used, and each weight has its
    own step size, which grows while the gradient keeps its sign and shrinks when it flips.
    Update, with ``g`` the gradient (negated when ``maximize``) and ``g_prev`` the previous
    step's (0 at the start)::

        where g * g_prev > 0:  step_size = min(step_size * etaplus, max)
        where g * g_prev < 0:  step_size = max(step_size * etaminus, min); g = 0
        w = w - step_size * sign(g)
        g_prev = g

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.01.
        etas: ``(eta_minus, eta_plus)`` with 0 < eta_minus < 1 < eta_plus: how step sizes
            shrink and grow. Default (0.5, 1.2).
        step_sizes: ``(min, max)``, the bounds of every step size. Default (1e-6, 50).
        maximize, foreach, fused, capturable, differentiable, nonfinite_grads, state_dtype,
            stochastic_rounding: as for :class:`optimlab.Adam` (how the step is computed, never
            what; the non-finite policy; mixed precision).

    Every step size starts at ``lr``: the learning rate is only read when a parameter's
    state is created, as in torch (a schedule that changes it later has no effect), and even
    ``lr = 0`` moves the weights, by ``min``, the smallest step size. Rprop is a full-batch
    method: mini-batch noise flips gradient signs and shrinks the steps. No weight decay, as
    in torch. The state is torch's: ``step``, ``prev`` and ``step_size``.

    How the step is computed (``fused``, ``foreach``), ``nonfinite_grads`` and mixed
    precision (``state_dtype``, ``stochastic_rounding``) are as for
    :class:`optimlab.Adam`.

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        >>> opt = optimlab.Rprop([w], lr=0.1)
        >>> for _ in range(3):   # steps of 0.1, 0.12, 0.144: the sign never flips
        ...     opt.zero_grad(); (w ** 2).sum().backward(); _ = opt.step()
        >>> [round(x, 6) for x in w.tolist()]
        [0.636, -1.636]
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "etas": rprop_etas,
        "step_sizes": rprop_step_sizes,
        "maximize": boolean,
    }
    _rule = staticmethod(rules.rprop)
    _derived = {
        "etaminus": item("etas", 0),
        "etaplus": item("etas", 1),
        "step_size_min": item("step_sizes", 0),
        "step_size_max": item("step_sizes", 1),
    }

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50.0),
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _buffer_names(self, group):
        return ("prev", "step_size")

    def _init_state(self, p, group):
        lr = tensor_number("lr", group["lr"])
        fill = complex(lr, lr) if p.is_complex() else lr  # both real parts start at lr
        return {
            "step": new_step(),
            "prev": torch.zeros_like(p, memory_format=torch.preserve_format),
            "step_size": torch.full_like(p, fill, memory_format=torch.preserve_format),
        }


# --- ASGD ----------------------------------------------------------------------------------


class ASGD(Optimizer):
    r"""ASGD; numerically identical to :class:`torch.optim.ASGD` (same arguments, defaults).

    Averaged stochastic gradient descent (Polyak and Juditsky, 1992; Bottou, 2012): plain SGD
    with a slowly decaying step size, which also keeps ``ax``, the running mean of the
    weights from step ``t0`` on. The mean of SGD's noisy iterates sits closer to the minimum
    than any one of them; the steps themselves never use it. Update at step ``t``, with ``g``
    the gradient (negated when ``maximize``) plus ``weight_decay * w``::

        w = w * (1 - lambd * eta) - eta * g
        ax = ax + mu * (w - ax)                     ax = w while mu = 1
        eta = lr / (1 + lambd * lr * t) ** alpha    the next step's, from this step's lr
        mu = 1 / max(1, t - t0)

    Args:
        params: the tensors to optimize, or parameter-group dicts (as torch.optim).
        lr: the learning rate, >= 0 (a number or a 1-element tensor). Default 0.01.
        lambd: >= 0, the decay of the step size (and of the weights). Default 1e-4.
        alpha: >= 0, the power of the step size's decay. Default 0.75.
        t0: the step from which the average is kept. Default 1e6.
        weight_decay: >= 0; ``weight_decay * w`` is added to ``g``. Default 0.
        maximize, foreach, fused, capturable, differentiable, nonfinite_grads, state_dtype,
            stochastic_rounding: as for :class:`optimlab.Adam` (how the step is computed, never
            what; the non-finite policy; mixed precision).

    ``eta`` starts at ``lr`` and ``mu`` at 1. With the default ``t0 = 1e6`` the average only
    starts after a million steps (``ax`` is a copy of the weights until then): pass a
    smaller ``t0`` to average. Use the average through :meth:`averaged_parameters` (copies)
    or :meth:`eval` / :meth:`train` (the parameters hold the averages in between;
    :func:`optimlab.evaluation_weights`, :func:`optimlab.train.fit` and the lab call them).

    **Train and eval modes.** In train mode (the default) the parameters hold the training
    weights ``w``. :meth:`eval` moves each stepped parameter's ``w`` into its state, as the
    entry ``train_weight``, and puts ``ax`` into the parameter; :meth:`train` puts
    ``train_weight`` back (bitwise) and drops the entry; ``step()`` in eval mode raises an
    error. The mode is saved in ``state_dict()`` as ``train_mode`` in each parameter group
    (as the schedule-free optimizers do), and ``train_weight`` is a state entry exactly while
    its group is in eval mode, so a checkpoint taken in either mode holds all that training
    needs: load the model and the optimizer saved together, call ``train()`` (HF Trainer and
    :func:`~optimlab.train.fit` do) and training goes on bitwise as if never interrupted.
    Outside eval mode the state holds torch's entries only (a train-mode checkpoint is
    torch's), and a state without ``train_mode`` (torch's, or an earlier optimlab's) loads in
    train mode. Each switch gives the parameters new state dicts, so a ``state_dict()`` taken
    before it stays as it was. Eval mode costs one copy of the weights, as before.

    Parity with torch, and where it takes care: torch keeps ``eta`` and ``mu`` per parameter
    in 0-d tensors of its default scalar dtype (float32 unless ``torch.get_default_dtype()``
    is float64, even for float64 parameters), and computes the next ``eta`` after each step
    from that step's ``lr``, so a changed learning rate acts one step late. This class keeps
    them per parameter too, in the state under torch's names, as Python floats rounded
    exactly as torch rounds them, and computes them at the same moments: the same values, so
    the same updates, while the rule stays elementwise with scalar arguments (fusable).
    Parameters whose ``eta`` or ``mu`` differ (they skipped steps while the learning rate
    changed) are stepped in separate calls.

    How the step is computed (``fused``, ``foreach``), ``nonfinite_grads`` and mixed
    precision (``state_dtype``, ``stochastic_rounding``) are as for
    :class:`optimlab.Adam`.

    Example::

        >>> import torch, optimlab
        >>> w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        >>> opt = optimlab.ASGD([w], lr=0.1, t0=1)
        >>> for _ in range(4):   # w shrinks by about 0.8 per step; the mean of steps 3 and 4:
        ...     opt.zero_grad(); (w ** 2).sum().backward(); _ = opt.step()
        >>> [round(x, 4) for x in opt.averaged_parameters()[0].tolist()]
        [0.4608, -0.9216]
    """

    _checks = {
        **Optimizer._checks,
        "lr": non_negative,
        "lambd": non_negative,
        "alpha": non_negative_any_size,
        "t0": non_negative_any_size,
        "weight_decay": non_negative,
        "maximize": boolean,
    }
    _rule = staticmethod(rules.asgd)
    # The rule takes this step's eta and mu as scalars: they live in each parameter's state,
    # in 0-dim tensors as torch keeps them, and parameters are stepped together only when
    # they share them.
    _state_arguments = ("eta", "mu")
    #: entries each parameter group carries besides its hyperparameters (saved with it)
    _group_state = {"train_mode": True}

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        nonfinite_grads: str = "raise",
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), nonfinite_grads=nonfinite_grads)

    def _check_group(self, group: dict[str, Any], loading: bool = False) -> None:
        super()._check_group(group, loading)
        if "train_mode" in group:  # a loaded state's mode
            boolean("train_mode", group["train_mode"])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # A new group's parameters have no average yet: either mode describes them, so the
        # group takes the optimizer's current one (train mode for the first group).
        mode = self.param_groups[0]["train_mode"] if self.param_groups else True
        super().add_param_group(param_group)
        self.param_groups[-1]["train_mode"] = mode

    def _buffer_names(self, group):
        return ("ax",)

    def _init_state(self, p, group):
        # Also the template load_state_dict checks a saved state against: in eval mode a
        # stepped parameter's state holds its training weights besides torch's entries.
        state = {
            "step": new_step(),
            "eta": torch.as_tensor(tensor_number("lr", group["lr"]), dtype=step_dtype()),
            "mu": torch.ones((), dtype=step_dtype()),
            "ax": torch.zeros_like(p, memory_format=torch.preserve_format),
        }
        if not group.get("train_mode", True):
            state["train_weight"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    _eval_mode_holds = "their averages, not the training weights"
    #: after each step, each stepped parameter's ``eta`` and ``mu`` for the next come from these
    _after_step_inputs = ("lr", "lambd", "alpha", "t0")

    # The first step applied to a parameter takes the lr of its moment as ``eta``: torch makes
    # the state then, with ``eta = lr``. A state the device path made for a step it then
    # skipped, or a loaded one no step was applied to, holds the lr of another moment.
    def _arguments(self, group, state, step):
        arguments = super()._arguments(group, state, step)
        if step == 1:  # (in the state's dtype, as torch.as_tensor rounds it)
            lr = arguments["lr"]
            arguments["eta"] = float(np.float32(lr)) if state["eta"].dtype == torch.float32 else lr
        return arguments

    def _device_arguments(self, group, step, device, state):
        arguments = super()._device_arguments(group, step, device, state)
        lr = arguments["lr"]
        if not isinstance(lr, DeviceScalar):
            lr = DeviceScalar(torch.full((), float(lr), dtype=torch.float64, device=device))
        first = lr.tensor.to(state["eta"].dtype).double()  # (as torch.as_tensor rounds it)
        eta = torch.where(step.tensor == 1, first, arguments["eta"].tensor)
        return {**arguments, "eta": DeviceScalar(eta)}

    def _after_step(self, group, stepped):
        lr, lambd, alpha, t0 = (self._numbers(group)[k] for k in ("lr", "lambd", "alpha", "t0"))
        after: dict[int, tuple[Tensor, Tensor]] = {}  # by step count
        for state in stepped:
            step = step_count(state)
            if step not in after:  # as torch computes them: through torch.as_tensor
                after[step] = (
                    torch.as_tensor(rules.asgd_eta(lr, lambd, alpha, step)),
                    torch.as_tensor(rules.asgd_mu(t0, step)),
                )
            eta, mu = after[step]
            state["eta"].copy_(eta)
            state["mu"].copy_(mu)

    def _state_update(self, arguments):
        step = arguments["step"]
        return (
            rules.asgd_eta(arguments["lr"], arguments["lambd"], arguments["alpha"], step),
            rules.asgd_mu(arguments["t0"], step),
        )

    # -- the averaged weights ------------------------------------------------------------

    def averaged_parameters(self) -> list[Tensor]:
        """Copies of the averaged weights ``ax``, one per parameter, in ``param_groups`` order.

        A parameter that has not been stepped yet has no average: its copy is the parameter.
        """
        averages = []
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                source = state["ax"] if state else p
                averages.append(source.detach().clone())
        return averages

    @torch.no_grad()
    def eval(self) -> None:
        """Put the averaged weights into the parameters, to evaluate or save them.

        Each stepped parameter's training weights are kept in its state as ``train_weight``
        (saved with it) until :meth:`train` puts them back; ``step()`` refuses to run in
        between. Parameters never stepped have no average and stay as they are. Calling it
        twice is harmless.
        """
        for group in self.param_groups:
            if not group["train_mode"]:
                continue
            for p in group["params"]:
                state = self.state.get(p)
                if state:
                    # a new dict: a state_dict() taken before keeps its entries as they were
                    self.state[p] = {**state, "train_weight": p.detach().clone()}
                    p.copy_(state["ax"])
            group["train_mode"] = False

    @torch.no_grad()
    def train(self) -> None:
        """Put the training weights back after :meth:`eval` (harmless otherwise), bitwise."""
        for group in self.param_groups:
            if group["train_mode"]:
                continue
            for p in group["params"]:
                state = self.state.get(p)
                if state and "train_weight" in state:
                    p.copy_(state["train_weight"])
                    self.state[p] = {k: v for k, v in state.items() if k != "train_weight"}
            group["train_mode"] = True

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by ``state_dict()``, or by torch.optim.ASGD.

        The optimizer takes the saved mode: after a state saved in eval mode the parameters
        are taken to hold the averages (load the model saved with it), and :meth:`train` puts
        the saved training weights in. A state without modes (torch's, or an earlier
        optimlab's) is in train mode.
        """
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            for key, value in self._group_state.items():
                group.setdefault(key, value)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:  # pickled by an earlier optimlab: train mode
            for key, value in self._group_state.items():
                group.setdefault(key, value)

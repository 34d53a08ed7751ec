"""optimlab's twins against torch.optim, driven by PyTorch's own optimizer test database.

The twins (SGD, Adam, AdamW, RMSprop, NAdam, RAdam, Adamax, Adagrad, Adadelta, Rprop, ASGD,
Adafactor, Muon) claim to be drop-in replacements for their ``torch.optim`` classes. The
configurations and bad inputs come from ``torch.testing._internal.common_optimizers.optim_db``,
the table PyTorch's own ``test/test_optim.py`` runs over (shipped in the torch wheel; it needs
``expecttest``), so every configuration torch tests is a configuration tested here. Its entries
without an optimlab twin (LBFGS, SparseAdam) are left out. All on the CPU; the twin of each
torch class is its registry entry's ``torch_twin`` (Adafactor and Muon by name).

What is proven, for every twin and every configuration of ``optim_inputs_func(device="cpu")``,
in float32 and float64:

* the numbers (``test_steps_match_torch``): the same parameters after each of 5 steps with the
  same gradients; bitwise on the per-tensor path (optimlab with ``foreach=False, fused=False``
  against torch's default, which is its for-loop on the CPU) and on the multi-tensor path (both
  with ``foreach=True``, where optim_db says torch has one); within a few ulps per step on
  optimlab's default fused path, whose square root may differ from torch's by 1 ulp. Where torch
  raises on a configuration, optimlab raises the same exception type;
* checkpoints both ways (``test_torch_checkpoint_resumes_in_optimlab``,
  ``test_optimlab_checkpoint_resumes_in_torch``): a ``state_dict`` saved after 3 steps (through
  ``torch.save``/``torch.load(weights_only=True)``) resumes in optimlab for 3 more steps
  bitwise as torch's run goes on uninterrupted, and an optimlab checkpoint says what torch's
  own checkpoint says (torch resumed from either gives the same bits);
* the state format (``test_state_dict_has_torchs_keys``): ``state_dict()`` has every
  param_groups key and every per-parameter state entry torch's has, with torch's values, dtypes
  and shapes (not the values of ``foreach`` and ``fused``, each instance's own dispatch choice),
  after loading torch's checkpoint (the file given back) and after training as torch did;
  optimlab's extra keys are
  allowed only where the class docstring names them;
* ``state["step"]`` (``test_step_is_kept_as_torch_keeps_it``): the same Python type, dtype and
  value as torch's after one step;

and, for every twin:

* every bad input of ``optim_error_inputs_func`` (``test_error_input_raises_torchs_type``)
  raises torch's exception type (or a subclass), at construction or at the step as optim_db
  says, with a message optim_db's regex matches; a warning there is the same warning category
  and matches too. Where
  optim_db gives no parameters (torch's own test passes None, relying on its argument checks
  coming first), a small matrix is passed;
* every argument of the torch class's ``__init__`` (``test_constructor_takes_torchs_argument``)
  appears in the twin's signature with torch's default.
"""

from __future__ import annotations

import copy
import inspect
import io
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch.testing import assert_close

# torch's optim_db needs expecttest: the dev extra installs it
from torch.testing._internal.common_optimizers import (
    OptimizerErrorEnum,
    optim_db,
)

import optimlab
from optimlab.optim.registry import REGISTRY

#: torch.optim class -> its optimlab twin
TWINS: dict[type, type] = {e.torch_twin: e.cls for e in REGISTRY.values() if e.torch_twin}
TWINS.setdefault(torch.optim.Adafactor, optimlab.Adafactor)
TWINS.setdefault(torch.optim.Muon, optimlab.Muon)
INFOS = [info for info in optim_db if info.optim_cls in TWINS]

DTYPES = (torch.float32, torch.float64)
STEPS = 5  # compared steps of the numbers test
RESUME_AT = 3  # steps before a checkpoint, and steps after it
PLAIN = {"foreach": False, "fused": False}
DISPATCH = ("foreach", "fused")  # how a step is computed: their values are each instance's own
DOCUMENTED = "documented extra keys (allowed)"  # optimlab's per-tensor path (no fused square root)
SHAPES = [(3, 4), (5,), (2, 3, 2), ()]
MATRIX_SHAPES = [(4, 3), (2, 5), (3, 3)]  # torch.optim.Muon takes matrices only


def slug(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_")


def name(info: Any) -> str:
    return info.optim_cls.__name__


def twin(info: Any) -> type:
    return TWINS[info.optim_cls]


# --- parameters, gradients, runs ---------------------------------------------------------------


def make_params(info: Any, config: Any, dtype: torch.dtype) -> tuple[Any, list[torch.Tensor]]:
    """What the optimizer is given (the configuration's own param groups, if it has them) and
    its tensors in order; the same values at every call."""
    if config.params is not None:
        given = copy.deepcopy(config.params)
        leaves = [
            t for item in given for t in (item["params"] if isinstance(item, dict) else [item])
        ]
        return given, [t[1] if isinstance(t, tuple) else t for t in leaves]
    generator = torch.Generator().manual_seed(0)
    shapes = MATRIX_SHAPES if info.optim_cls is torch.optim.Muon else SHAPES
    params = [torch.randn(s, generator=generator, dtype=dtype).requires_grad_() for s in shapes]
    return params, params


def step(optimizer: Any, params: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Step ``k``: seeded gradients (the same for every optimizer), one step; the parameters."""
    generator = torch.Generator().manual_seed(1000 + k)
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator, dtype=p.dtype)
    optimizer.step()
    return [p.detach().clone() for p in params]


def build(cls: type, info: Any, config: Any, dtype: torch.dtype, extra: dict, start=None):
    """An optimizer of ``cls`` with the configuration's arguments (and ``extra``) on fresh
    parameters, set to ``start`` if given."""
    given, params = make_params(info, config, dtype)
    if start is not None:
        with torch.no_grad():
            for p, value in zip(params, start):
                p.copy_(value)
    return cls(given, **copy.deepcopy(config.kwargs), **extra), params


def trajectory(cls, info, config, dtype, extra, steps=STEPS) -> list[list[torch.Tensor]]:
    """The parameters after each of ``steps`` steps from the start."""
    optimizer, params = build(cls, info, config, dtype, extra)
    return [step(optimizer, params, k) for k in range(steps)]


def roundtrip(state_dict: dict) -> dict:
    """``state_dict`` through a file, as a checkpoint goes (weights only)."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def checkpoint(cls, info, config, dtype, extra):
    """Train ``RESUME_AT`` steps; the parameters and the saved ``state_dict`` then."""
    optimizer, params = build(cls, info, config, dtype, extra)
    for k in range(RESUME_AT):
        step(optimizer, params, k)
    return [p.detach().clone() for p in params], roundtrip(optimizer.state_dict())


def resumed(cls, info, config, dtype, extra, start, saved) -> Any:
    """A fresh optimizer of ``cls`` on parameters at ``start`` that loaded ``saved``."""
    optimizer, params = build(cls, info, config, dtype, extra, start)
    optimizer.load_state_dict(copy.deepcopy(saved))
    return optimizer, params


def resume(cls, info, config, dtype, extra, start, saved) -> list[list[torch.Tensor]]:
    """The parameters after each of ``RESUME_AT`` steps after loading ``saved``."""
    optimizer, params = resumed(cls, info, config, dtype, extra, start, saved)
    return [step(optimizer, params, k) for k in range(RESUME_AT, 2 * RESUME_AT)]


def assert_same_steps(actual, expected, tolerance: float, what: str) -> None:
    for k, (a, e) in enumerate(zip(actual, expected), start=1):
        assert_close(
            a, e, atol=tolerance, rtol=tolerance, msg=lambda m, k=k: f"{what}, step {k}: {m}"
        )


def torch_result(run, info, config, dtype, extra) -> Any:
    """``run`` on the torch class; where torch refuses the configuration, None, after checking
    that the twin refuses it with the same exception type (then there is nothing more to
    compare)."""
    try:
        return run(info.optim_cls, info, config, dtype, extra)
    except Exception as error:  # noqa: BLE001
        with pytest.raises(type(error)):
            run(twin(info), info, config, dtype, extra)
        return None


# --- the cases ---------------------------------------------------------------------------------


def configurations() -> Iterator[tuple[Any, Any, str]]:
    """(info, configuration, id) for every configuration of every twin."""
    for info in INFOS:
        seen: dict[str, int] = {}
        for config in info.optim_inputs_func(device="cpu"):
            label = f"{name(info)}-{slug(config.desc) or 'default'}"
            seen[label] = seen.get(label, 0) + 1
            yield info, config, label if seen[label] == 1 else f"{label}{seen[label]}"


def config_cases(dtypes=DTYPES) -> list:
    return [
        pytest.param(info, config, dtype, id=f"{label}-{str(dtype).removeprefix('torch.')}")
        for info, config, label in configurations()
        for dtype in dtypes
    ]


@dataclass(frozen=True)
class Path:
    """How each side computes a step, and how close the parameters must be."""

    id: str
    torch: dict
    optimlab: dict
    exact: bool

    def bitwise(self, config: Any) -> bool:
        """Whether the twins claim the same bits: not where optimlab takes its fused loop
        (its default, unless the configuration chooses a path itself)."""
        if self.exact:
            return True
        chosen = {"foreach", "fused"} & set(config.kwargs)
        return bool(chosen) and config.kwargs.get("fused") in (None, False)

    def applies(self, info: Any, config: Any) -> bool:
        if self.id == "default":
            return True
        chosen = {"foreach", "fused"} & set(config.kwargs)
        return not chosen and (self.id != "foreach" or "foreach" in info.supported_impls)


PATHS = (
    # torch's default on the CPU is its for-loop; optimlab's is its fused loop (1 ulp per root)
    Path("default", {}, {}, exact=False),
    Path("forloop", {}, PLAIN, exact=True),
    Path("foreach", {"foreach": True}, {"foreach": True}, exact=True),
)


def number_cases() -> list:
    return [
        pytest.param(*case.values, path, id=f"{case.id}-{path.id}")
        for case in config_cases()
        for path in PATHS
        if path.applies(case.values[0], case.values[1])
    ]


# --- 1. the numbers ----------------------------------------------------------------------------


#: torch classes whose multi-tensor path rounds differently from their for-loop (another order
#: of operations: RAdam's and NAdam's denominators; ASGD's and Adafactor's scalars kept in
#: tensors). optimlab computes one arithmetic on all its paths, torch's for-loop's: bitwise
#: against that, and within float32 rounding of torch's multi-tensor path.
FOREACH_ROUNDS_DIFFERENTLY = (
    torch.optim.RAdam,
    torch.optim.NAdam,
    torch.optim.ASGD,
    torch.optim.Adafactor,
)


@pytest.mark.parametrize("info, config, dtype, path", number_cases())
def test_steps_match_torch(info, config, dtype, path):
    tolerance = 0.0 if path.bitwise(config) else 8 * STEPS * torch.finfo(dtype).eps
    try:
        expected = trajectory(info.optim_cls, info, config, dtype, path.torch)
    except Exception as error:  # noqa: BLE001
        with pytest.raises(type(error)):
            trajectory(twin(info), info, config, dtype, path.optimlab)
        return
    actual = trajectory(twin(info), info, config, dtype, path.optimlab)
    what = f"optimlab.{name(info)}({path.optimlab}) vs torch.optim.{name(info)}({path.torch})"
    if path.id == "foreach" and info.optim_cls in FOREACH_ROUNDS_DIFFERENTLY:
        loop = trajectory(info.optim_cls, info, config, dtype, {})
        assert_same_steps(actual, loop, 0.0, what + "'s for-loop")
        # torch's multi-tensor scalars (ASGD's eta) round in float32 where its loop does not
        tolerance = 8 * STEPS * torch.finfo(torch.float32).eps
    assert_same_steps(actual, expected, tolerance, what)


# --- 2. errors ---------------------------------------------------------------------------------


def error_inputs(info: Any) -> list:
    return info.optim_error_inputs_func(device="cpu", dtype=torch.float32)


def error_cases() -> list:
    cases = []
    for info in INFOS:
        seen: set[str] = set()
        for index, case in enumerate(error_inputs(info)):
            label = f"{name(info)}-{slug(case.optimizer_error_input.desc)}"
            label = label if label not in seen else f"{label}-{index}"
            seen.add(label)
            cases.append(pytest.param(info, index, id=label))
    return cases


def raises_or_warns(expected: type[BaseException], regex: str, call) -> None:
    """``call()`` raises ``expected`` (or a subclass), or, for a warning, warns it and returns
    (an exception raised instead fails the test as it is), with a message that torch's
    ``regex`` matches (its words)."""
    if not issubclass(expected, Warning):
        with pytest.raises(expected, match=regex):
            call()
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    said = [f"{w.category.__name__}: {w.message}" for w in caught]
    assert any(
        issubclass(w.category, expected) and re.search(regex, str(w.message)) for w in caught
    ), f"no {expected.__name__} matching {regex!r}; warned: {said or 'nothing'}"


#: what torch refuses and optimlab's twin takes, as its docstring says: (class, optim_db's
#: description) -> why. These cases must step, to finite parameters, instead of raising.
EXTENSIONS = {
    ("Muon", "only support 2D parameters"): "other parameters take an AdamW step",
    ("Muon", "does not support complex parameters"): "complex matrices take an AdamW step",
    ("Adafactor", "does not support complex parameters"): "complex numbers as pairs of reals",
}


@pytest.mark.parametrize("info, index", error_cases())
def test_error_input_raises_torchs_type(info, index):
    case = error_inputs(info)[index]  # fresh tensors: a step error steps them
    given = case.optimizer_error_input
    params = given.params if given.params is not None else [torch.nn.Parameter(torch.ones(2, 2))]
    if (name(info), given.desc) in EXTENSIONS:
        optimizer = twin(info)(params, **given.kwargs)
        for p in params:
            p.grad = torch.ones_like(p)
        optimizer.step()
        assert all(bool(torch.isfinite(p).all()) for p in params)
        return
    if case.error_on == OptimizerErrorEnum.CONSTRUCTION_ERROR:
        raises_or_warns(
            case.error_type, case.error_regex, lambda: twin(info)(params, **given.kwargs)
        )
    else:
        optimizer = twin(info)(params, **given.kwargs)
        raises_or_warns(case.error_type, case.error_regex, optimizer.step)


def negative_number_cases() -> list:
    """(info, argument): each number argument of each torch class, to be given -1.0."""
    cases = []
    for info in INFOS:
        signature = inspect.signature(info.optim_cls.__init__)
        for argument, parameter in signature.parameters.items():
            if isinstance(parameter.default, float) and not isinstance(parameter.default, bool):
                cases.append(pytest.param(info, argument, id=f"{name(info)}-{argument}"))
    return cases


@pytest.mark.parametrize("info, argument", negative_number_cases())
def test_a_negative_number_is_refused_in_torchs_words(info, argument):
    # torch's message for the value, where torch refuses it, begins optimlab's (which goes on
    # to name the argument and what is valid): code that matches torch's message matches ours.
    kwargs = {argument: -1.0}
    try:
        info.optim_cls([torch.nn.Parameter(torch.ones(2, 2))], **kwargs)
    except ValueError as error:
        torchs = str(error)
    else:
        return  # torch takes it (optimlab may refuse it, in its own words)
    with pytest.raises(ValueError) as raised:
        twin(info)([torch.nn.Parameter(torch.ones(2, 2))], **kwargs)
    assert str(raised.value).startswith(torchs), (str(raised.value), torchs)


# --- 3. checkpoints both ways ------------------------------------------------------------------


@pytest.mark.parametrize("info, config, dtype", config_cases())
def test_torch_checkpoint_resumes_in_optimlab(info, config, dtype):
    # optimlab continues exactly as torch would have without the interruption. (torch resumed
    # from the file mostly does too; not NAdam's with float64 parameters, whose product torch
    # casts to float64 on loading.)
    found = torch_result(checkpoint, info, config, dtype, {})
    if found is None:
        return
    start, saved = found
    expected = trajectory(info.optim_cls, info, config, dtype, {}, 2 * RESUME_AT)[RESUME_AT:]
    actual = resume(twin(info), info, config, dtype, PLAIN, start, saved)
    what = "optimlab resumed from torch's checkpoint vs torch uninterrupted"
    assert_same_steps(actual, expected, 0.0, what)


@pytest.mark.parametrize("info, config, dtype", config_cases())
def test_optimlab_checkpoint_resumes_in_torch(info, config, dtype):
    # every run resumes from torch's parameters at the checkpoint; the state differs by source
    found = torch_result(checkpoint, info, config, dtype, {})
    if found is None:
        return
    start, torch_saved = found
    _, our_saved = checkpoint(twin(info), info, config, dtype, PLAIN)
    theirs = resume(info.optim_cls, info, config, dtype, {}, start, our_saved)
    reference = resume(info.optim_cls, info, config, dtype, {}, start, torch_saved)
    what = "torch resumed from optimlab's checkpoint vs torch resumed from its own"
    assert_same_steps(theirs, reference, 0.0, what)


def key_differences(ours: dict, theirs: dict, twin_cls: type) -> list[str]:
    """What ``ours`` (a state_dict) lacks of ``theirs``, and its extra keys, marked where the
    docstring of ``twin_cls`` does not name them; the groups or parameters with the same finding
    together: ``"state[0, 1]: missing torch's ['mu_product']"``."""
    doc = inspect.getdoc(twin_cls) or ""
    findings: dict[tuple[str, str], list[int]] = {}

    def compare(part: str, index: int, our_keys, their_keys) -> None:
        missing = sorted(set(their_keys) - set(our_keys))
        extra = sorted(set(our_keys) - set(their_keys))
        undocumented = [k for k in extra if not re.search(rf"\b{re.escape(k)}\b", doc)]
        documented = [k for k in extra if k not in undocumented]
        for finding, keys in [
            ("missing torch's", missing),
            ("extra keys not named in the docstring", undocumented),
            (DOCUMENTED, documented),
        ]:
            if keys:
                findings.setdefault((part, f"{finding} {keys}"), []).append(index)

    if len(ours["param_groups"]) != len(theirs["param_groups"]):
        return [f"{len(ours['param_groups'])} param_groups, torch {len(theirs['param_groups'])}"]
    for i, (our_group, their_group) in enumerate(zip(ours["param_groups"], theirs["param_groups"])):
        compare("param_groups", i, our_group, their_group)
    for index in sorted(set(ours["state"]) | set(theirs["state"])):
        compare("state", index, ours["state"].get(index, {}), theirs["state"].get(index, {}))
    return [f"{part}{indices}: {finding}" for (part, finding), indices in findings.items()]


def assert_same_value(ours: Any, theirs: Any, where: str) -> None:
    """``ours`` is ``theirs``: tensors bitwise with the same dtype and shape, the rest equal."""
    if isinstance(ours, torch.Tensor) or isinstance(theirs, torch.Tensor):
        assert type(ours) is type(theirs), (
            f"{where}: {ours!r} ({type(ours).__name__}); torch keeps {theirs!r} "
            f"({type(theirs).__name__})"
        )
        assert_close(ours, theirs, atol=0, rtol=0, equal_nan=True, msg=lambda m: f"{where}: {m}")
    elif isinstance(theirs, (tuple, list)) and isinstance(ours, (tuple, list)):
        assert len(ours) == len(theirs), f"{where}: {ours!r}; torch keeps {theirs!r}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same_value(a, b, f"{where}[{i}]")
    else:
        assert ours == theirs or ours != ours and theirs != theirs, (
            f"{where}: {ours!r}; torch keeps {theirs!r}"
        )


def assert_same_values(ours: dict, theirs: dict) -> None:
    """Every value torch keeps, in ``ours``: the same, bitwise, with the same type and dtype."""
    for i, (our_group, their_group) in enumerate(zip(ours["param_groups"], theirs["param_groups"])):
        for key, value in their_group.items():
            if key in DISPATCH and key in our_group:
                continue
            assert_same_value(our_group[key], value, f"param_groups[{i}][{key!r}]")
    for index, entries in theirs["state"].items():
        for key, value in entries.items():
            assert_same_value(ours["state"][index][key], value, f"state[{index}][{key!r}]")


@pytest.mark.parametrize("source", ["loaded_from_torch", "trained"])
@pytest.mark.parametrize("info, config, dtype", config_cases())
def test_state_dict_has_torchs_keys(info, config, dtype, source):
    """``state_dict()`` after loading torch's checkpoint holds what the checkpoint holds, and
    after training as torch did what torch's instance holds."""
    found = torch_result(checkpoint, info, config, dtype, {})
    if found is None:
        return
    start, saved = found
    if source == "trained":
        theirs, ours = saved, checkpoint(twin(info), info, config, dtype, PLAIN)[1]
    else:  # loading and saving again gives torch's file back
        theirs = saved
        ours = resumed(twin(info), info, config, dtype, PLAIN, start, saved)[0].state_dict()
    problems = key_differences(ours, theirs, twin(info))
    assert all(DOCUMENTED in p for p in problems), "; ".join(problems)
    assert_same_values(ours, theirs)


# --- 4. the step count -------------------------------------------------------------------------


@pytest.mark.parametrize("info, config, dtype", config_cases(dtypes=(torch.float32,)))
def test_step_is_kept_as_torch_keeps_it(info, config, dtype):
    found = torch_result(build, info, config, dtype, {})
    if found is None:
        return
    theirs, their_params = found
    step(theirs, their_params, 0)
    ours, our_params = build(twin(info), info, config, dtype, {})
    step(ours, our_params, 0)
    for i, (p, q) in enumerate(zip(our_params, their_params)):
        # torch's SGD and Muon count no steps; optimlab's keep the count as the others do
        expected = theirs.state[q].get("step", torch.tensor(1.0))
        assert "step" in ours.state[p], f"params[{i}]: no state['step'] ({sorted(ours.state[p])})"
        actual = ours.state[p]["step"]
        assert type(actual) is type(expected), (
            f"params[{i}]: state['step'] is {actual!r} ({type(actual).__name__}); torch keeps "
            f"{expected!r} ({type(expected).__name__})"
        )
        assert_close(actual, expected, atol=0, rtol=0, msg=lambda m, i=i: f"params[{i}]: {m}")


# --- 5. the constructor ------------------------------------------------------------------------


def signature_cases() -> list:
    return [
        pytest.param(torch_cls, twin_cls, argument, id=f"{torch_cls.__name__}-{argument}")
        for torch_cls, twin_cls in TWINS.items()
        for argument in inspect.signature(torch_cls.__init__).parameters
        if argument not in ("self", "params")
    ]


@pytest.mark.parametrize("torch_cls, twin_cls, argument", signature_cases())
def test_constructor_takes_torchs_argument(torch_cls, twin_cls, argument):
    expected = inspect.signature(torch_cls.__init__).parameters[argument]
    ours = inspect.signature(twin_cls.__init__)
    assert argument in ours.parameters, (
        f"optimlab.{twin_cls.__name__}.__init__ has no parameter {argument!r} "
        f"(torch: {expected}); optimlab's signature: {ours}"
    )
    default = ours.parameters[argument].default
    assert default == expected.default, (
        f"optimlab.{twin_cls.__name__}({argument}={default!r}); torch's default is "
        f"{expected.default!r}"
    )

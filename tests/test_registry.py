"""optimlab's optimizer registry drives the exports, the lab, the benchmarks and these tests.

Adding an optimizer is its rule, its class with its registry entry, its reference test and a
guide paragraph: these tests fail when the entry lacks any of the rest.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from registry import CASES

import optimlab
from optimlab.benchmarks.bench_optimizers import VARIANTS
from optimlab.lab.contenders import CONTENDERS, GROUPS
from optimlab.optim import binding

ENTRIES = list(optimlab.REGISTRY.values())


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_every_optimizer_has_registry_cases_and_a_reference(entry):
    cases = [c for c in CASES if c.cls is entry.cls]
    assert cases, f"{entry.cls.__name__} has no case in tests/registry*.py"
    # Proven against something someone else wrote: torch.optim's numbers or a float64
    # transcription of the paper (references*.py).
    assert any(c.torch_twin is not None or c.reference is not None for c in cases), (
        f"{entry.cls.__name__} has no case with a torch twin or a float64 reference"
    )


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_exports_follow_the_registry(entry):
    name = entry.cls.__name__
    assert getattr(optimlab, name) is entry.cls and name in optimlab.__all__
    assert getattr(optimlab.optim, name) is entry.cls and name in optimlab.optim.__all__
    assert optimlab.OPTIMIZERS[entry.name] is entry.cls
    assert (entry.name in optimlab.BEYOND_NOTES) == (entry.family == "beyond")
    contender = CONTENDERS[entry.name]
    assert (contender.optimizer, contender.title, contender.about) == (
        entry.name,
        entry.title,
        entry.about,
    )
    assert (entry.name in GROUPS["beyond"]) == (entry.family == "beyond")


def test_the_registry_is_the_whole_list():
    # every Optimizer subclass optimlab exports is registered, and nothing else is (the
    # package imports its names on first use: what it exports is what __all__ names)
    exported = {
        value
        for value in (getattr(optimlab, name) for name in optimlab.__all__)
        if inspect.isclass(value)
        and issubclass(value, optimlab.Optimizer)
        and value is not optimlab.Optimizer
    }
    assert exported == {entry.cls for entry in ENTRIES}
    assert list(optimlab.OPTIMIZERS) == [entry.name for entry in ENTRIES]


def test_benchmark_variants_are_every_fusable_configuration():
    expected = [v.id for entry in ENTRIES if entry.fusable for v in entry.benchmarked()]
    assert [v.id for v in VARIANTS] == expected
    assert {v.id.split("-")[0] for v in VARIANTS} >= {e.name for e in ENTRIES if e.fusable}


@pytest.mark.parametrize(
    "variant_id, reads, writes",
    [
        # What each rule must move, from its formula: SGD reads w and g and writes w; Adam
        # reads w, g, m, v and writes w, m, v; AMSGrad adds the running maximum; ASGD with
        # mu = 1 (the default t0 = 1e6 is not reached) overwrites its average unread.
        ("sgd", 2, 1),
        ("sgd-momentum", 3, 2),
        ("adam", 4, 3),
        ("adam-amsgrad", 5, 4),
        ("rmsprop-centered-momentum", 5, 4),
        ("asgd", 2, 2),
        ("ademamix", 5, 4),
    ],
)
def test_bytes_per_parameter_come_from_the_recorded_rule(variant_id, reads, writes):
    variant = next(v for v in VARIANTS if v.id == variant_id)
    assert variant.bytes_per_param == 4 * (reads + writes)


# (Momentum, Muon and Prodigy pick their rules themselves, in _update or _step_params.)
@pytest.mark.parametrize(
    "entry", [e for e in ENTRIES if e.cls._rule is not None], ids=lambda e: e.name
)
def test_the_rule_takes_its_arguments_by_name(entry):
    # Every keyword of the rule is a hyperparameter of the class, the step count, a state
    # argument or derived by the class: a class is its signature, its checks and its docstring.
    rule = entry.cls._rule
    optimizer = entry.cls([torch.zeros(2, 2, requires_grad=True)])
    group = optimizer.param_groups[0]
    state = optimizer._init_state(group["params"][0], group)
    arguments = optimizer._arguments(group, state, 1)
    _, keywords = binding.signature(rule)
    missing = [k for k in keywords if k not in arguments and k not in optimizer._derived]
    assert not missing, f"{rule.__name__} takes {missing}, which nothing names"
    # and its buffer arguments are state entries the class keeps
    names, _ = binding.signature(rule)
    kept = set(optimizer._buffer_names(group))
    for case in (c for c in CASES if c.cls is entry.cls):
        configured = case.make([torch.zeros(2, 2, requires_grad=True)])
        kept |= set(configured._buffer_names(configured.param_groups[0]))
    assert kept <= set(names), f"{entry.cls.__name__} keeps buffers its rule does not take"


def test_a_rule_argument_nothing_names_is_a_clear_error():
    def rule(ops, params, grads, exp_avgs, *, lr, unheard_of):
        raise AssertionError("not reached")

    with pytest.raises(TypeError, match=r"rule takes 'unheard_of', which is neither"):
        binding.call_rule(rule, None, [], [], {}, {"lr": 0.1}, {})

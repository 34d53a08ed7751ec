"""Escaping saddle points and poor local minima: gradient noise, random restarts, annealing.

The notes name the remedies; each is a part that composes with any optimizer:

* :class:`GradientNoise` adds annealed Gaussian noise, variance ``eta / (1 + t) ** gamma``, to
  every gradient before the wrapped optimizer's step (Neelakantan et al., 2015);
* :func:`random_restarts` runs a job from ``k`` seeded random starts, in sequence or in
  parallel processes, keeps the best and reports all;
* :class:`Annealing` makes each step of the wrapped optimizer, perturbed, a Metropolis proposal
  with a scheduled temperature; :func:`simulated_annealing` is the gradient-free form;
* :func:`descend` is one seeded run on a :mod:`~optimlab.escape.problems` trap, and
  :func:`~optimlab.escape.study.escape_main` measures how often each remedy escapes each trap.

    >>> import torch, optimlab
    >>> from optimlab.escape import Annealing, GradientNoise
    >>> w = torch.zeros(3, requires_grad=True)
    >>> opt = Annealing(GradientNoise(optimlab.Adam([w], lr=1e-2), eta=0.01, seed=0),
    ...                 temperature="exponential_decay:lr=0.1,decay_rate=0.01,decay_steps=1000",
    ...                 perturbation_std=0.01, seed=0)
    >>> sorted(opt.state_dict())
    ['annealing', 'optimizer']
"""

from . import problems
from .annealing import (
    AcceptanceStats,
    Annealing,
    AnnealingResult,
    Proposal,
    metropolis_accept,
    simulated_annealing,
)
from .base import OptimizerWrapper
from .descent import DescentResult, descend
from .noise import AnnealedNoise, GradientNoise, add_gaussian_noise_, annealed_noise
from .problems import PROBLEMS, Problem
from .restarts import (
    RestartReport,
    RestartRun,
    loss_of,
    map_in_processes,
    random_restarts,
    restart_seeds,
)


def __getattr__(name: str):
    # escape_main is imported on first use, so that ``python -m optimlab.escape.study`` does not
    # find its own module already imported by the package.
    if name == "escape_main":
        from .study import escape_main

        return escape_main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PROBLEMS",
    "AcceptanceStats",
    "AnnealedNoise",
    "Annealing",
    "AnnealingResult",
    "DescentResult",
    "GradientNoise",
    "OptimizerWrapper",
    "Problem",
    "Proposal",
    "RestartReport",
    "RestartRun",
    "add_gaussian_noise_",
    "annealed_noise",
    "descend",
    "escape_main",
    "loss_of",
    "map_in_processes",
    "metropolis_accept",
    "problems",
    "random_restarts",
    "restart_seeds",
    "simulated_annealing",
]

"""Remedies against saddle points and poor local minima: gradient noise, restarts, annealing.

The notes name the remedies; each is a part that composes with any optimizer:

* :class:`GradientNoise` adds annealed Gaussian noise, variance ``eta / (1 + t) ** gamma``, to
  every gradient before the wrapped optimizer's step (Neelakantan et al., 2015);
* :func:`random_restarts` runs a job from ``k`` seeded random starts, in sequence or in
  parallel processes, keeps the best and reports all;
* :class:`Annealing` makes each step of the wrapped optimizer, perturbed, a Metropolis proposal
  with a scheduled temperature; :func:`simulated_annealing` is the gradient-free form.

The experiment that measures how often each remedy frees each trap is the lab's escape study,
:mod:`optimlab.lab.escape` (``optimlab escape``).

    >>> import torch, optimlab
    >>> from optimlab.remedies import Annealing, GradientNoise
    >>> w = torch.zeros(3, requires_grad=True)
    >>> opt = Annealing(GradientNoise(optimlab.Adam([w], lr=1e-2), eta=0.01, seed=0),
    ...                 temperature="exponential_decay:lr=0.1,decay_rate=0.01,decay_steps=1000",
    ...                 perturbation_std=0.01, seed=0)
    >>> sorted(opt.state_dict())
    ['annealing', 'optimizer']
"""

from .annealing import (
    AcceptanceStats,
    Annealing,
    AnnealingResult,
    Proposal,
    metropolis_accept,
    simulated_annealing,
)
from .base import OptimizerWrapper
from .noise import AnnealedNoise, GradientNoise, add_gaussian_noise_, annealed_noise
from .restarts import (
    RestartReport,
    RestartRun,
    loss_of,
    map_in_processes,
    random_restarts,
    restart_seeds,
)

__all__ = [
    "AcceptanceStats",
    "AnnealedNoise",
    "Annealing",
    "AnnealingResult",
    "GradientNoise",
    "OptimizerWrapper",
    "Proposal",
    "RestartReport",
    "RestartRun",
    "add_gaussian_noise_",
    "annealed_noise",
    "loss_of",
    "map_in_processes",
    "metropolis_accept",
    "random_restarts",
    "restart_seeds",
    "simulated_annealing",
]

"""Every optimizer, declared once: the table that exports, the lab, the CLI, the benchmarks and
the tests read.

An :class:`Entry` says what an optimizer is to the rest of optimlab: its class, the name the lab
and the command line use, whether the notes teach it, one line on what it does, the
``torch.optim`` class that computes the same update (if any) and the configurations the
benchmarks time. From this table come ``optimlab.OPTIMIZERS`` and ``BEYOND_NOTES``, both
``__all__`` lists, the lab's contenders, ``optimlab list``, the benchmark variants (whose bytes
per parameter come from the recorded rule, see :func:`optimlab.fused.steps.traffic`) and the
tests' list of classes. Adding an optimizer is its rule (``core/``), its class (``optim/``),
its entry here, its reference test and a paragraph of the guide.

>>> REGISTRY["adam"].cls.__name__, REGISTRY["adam"].family
('Adam', 'notes')
>>> [c.id for c in REGISTRY["sgd"].benchmarked()]
['sgd', 'sgd-momentum', 'sgd-nesterov']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .adam_family import Adamax, AdEMAMix, Lion, NAdam, RAdam
from .adaptive import Adam, AdamW, RMSprop
from .base import Optimizer
from .classic import ASGD, Adadelta, Adagrad, Rprop
from .layerwise import LAMB, LARS, Adafactor, Muon
from .sgd import SGD, Momentum
from .tuning_free import Prodigy, ScheduleFreeAdamW, ScheduleFreeSGD

#: the families of :attr:`Entry.family`: taught by the notes, or beyond them (opt-in in the lab)
FAMILIES = ("notes", "beyond")


@dataclass(frozen=True)
class Configuration:
    """A configuration common enough that ``optimlab build`` compiles its kernels ahead, and
    (unless ``timed=False``) the benchmarks time it: ``Configuration("momentum", {"momentum":
    0.9})`` of SGD is the variant ``sgd-momentum``; the empty suffix is the defaults."""

    suffix: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    #: part of ``optimlab bench --quick``
    quick: bool = False
    #: a word for the benchmark table (where in the notes it comes from, ...)
    note: str = ""
    #: timed by the benchmarks (False: only built ahead)
    timed: bool = True


@dataclass(frozen=True)
class Variant:
    """An entry's configuration, as the benchmarks see it: the optimizer, its arguments and its
    torch twin with the same arguments (None where torch does not take them)."""

    id: str
    entry: Entry
    configuration: Configuration

    def make(self, params: Any, **kwargs: Any) -> Optimizer:
        return self.entry.cls(params, **self.configuration.arguments, **kwargs)

    @property
    def torch_twin(self) -> type | None:
        twin = self.entry.torch_twin
        if twin is None:
            return None
        try:  # torch takes these arguments? (Adam's bias_correction, RMSprop's eps placement: no)
            twin([torch.zeros(1, requires_grad=True)], **self.configuration.arguments)
        except TypeError:
            return None
        return twin


@dataclass(frozen=True)
class Entry:
    """One optimizer, declared once (see the module docstring)."""

    #: the name of the lab, the CLI and ``optimlab.OPTIMIZERS``: ``"adam"``
    name: str
    cls: type[Optimizer]
    #: ``"notes"`` (the lab compares it by default) or ``"beyond"``
    family: str
    #: what it does, in one line (``optimlab list``, the lab's legends)
    about: str
    #: the ``torch.optim`` class computing the same update from the same arguments
    torch_twin: type | None = None
    #: its common configurations, the defaults first: built ahead and timed (if fusable)
    configurations: tuple[Configuration, ...] = (Configuration(),)
    #: the name in figures and tables, if not the class's
    title: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"{self.name}: family must be one of {FAMILIES}, got {self.family!r}")
        if not self.title:
            object.__setattr__(self, "title", self.cls.__name__)

    @property
    def fusable(self) -> bool:
        """Whether its rule is elementwise, so the fused kernel can take it."""
        return self.cls._unfusable_reason is None

    def variants(self) -> list[Variant]:
        """Its configurations, as ``optimlab build`` and the benchmarks take them."""
        return [
            Variant(f"{self.name}-{c.suffix}" if c.suffix else self.name, self, c)
            for c in self.configurations
        ]

    def benchmarked(self) -> list[Variant]:
        """The variants the benchmarks time (none when its rule cannot be fused)."""
        return [v for v in self.variants() if self.fusable and v.configuration.timed]


def _entries(*entries: Entry) -> dict[str, Entry]:
    return {entry.name: entry for entry in entries}


#: Every optimizer, the notes' first, in the order the notes (then the guide) introduce them.
REGISTRY: dict[str, Entry] = _entries(
    # --- the notes ---------------------------------------------------------------------------
    Entry(
        "sgd",
        SGD,
        "notes",
        "plain gradient descent, w -= lr * g",
        torch.optim.SGD,
        (
            Configuration(),
            Configuration("momentum", {"momentum": 0.9}, quick=True),
            Configuration("nesterov", {"momentum": 0.9, "nesterov": True}),
            Configuration("weight_decay", {"weight_decay": 1e-4}, timed=False),
        ),
    ),
    Entry(
        "momentum",
        Momentum,
        "notes",
        "steps along an exponentially weighted average of gradients (beta=0.9)",
        None,
        (
            Configuration("ema", {"beta": 0.9}, note="averaged momentum (notes)"),
            Configuration("ema-bias_correction", {"beta": 0.9, "bias_correction": True}),
            Configuration(
                "heavy_ball",
                {"beta": 0.9, "form": "heavy_ball"},
                quick=True,
                note="heavy ball (notes)",
            ),
            Configuration(
                "heavy_ball-nesterov", {"beta": 0.9, "form": "heavy_ball", "nesterov": True}
            ),
        ),
        title="Momentum (EWA)",
    ),
    Entry(
        "rmsprop",
        RMSprop,
        "notes",
        "divides each step by the root of an average of squared gradients",
        torch.optim.RMSprop,
        (
            Configuration(quick=True),
            Configuration(
                "eps_inside_sqrt",
                {"alpha": 0.9, "eps": 1e-7, "eps_inside_sqrt": True},
                note="epsilon inside the root (notes, Keras)",
            ),
            Configuration("centered-momentum", {"centered": True, "momentum": 0.9}),
            Configuration("momentum", {"momentum": 0.9}, timed=False),
            Configuration("centered", {"centered": True}, timed=False),
        ),
    ),
    Entry(
        "adam",
        Adam,
        "notes",
        "momentum and RMSprop, both bias-corrected",
        torch.optim.Adam,
        (
            Configuration(quick=True),
            Configuration(
                "no_bias_correction-eps_inside_sqrt",
                {"bias_correction": False, "eps_inside_sqrt": True},
                note="seed 000 listing 3 (notes)",
            ),
            Configuration("amsgrad", {"amsgrad": True}),
            Configuration("weight_decay", {"weight_decay": 1e-4}, timed=False),
        ),
    ),
    Entry(
        "adamw",
        AdamW,
        "notes",
        "Adam with decoupled weight decay (0.01)",
        torch.optim.AdamW,
        (
            Configuration("", {"weight_decay": 1e-2}),
            Configuration("amsgrad", {"weight_decay": 1e-2, "amsgrad": True}, timed=False),
        ),
    ),
    # --- beyond the notes (issue 8): opt-in in the lab, with --optimizers beyond / all ---------
    Entry("nadam", NAdam, "beyond", "Adam with Nesterov momentum", torch.optim.NAdam),
    Entry(
        "radam",
        RAdam,
        "beyond",
        "Adam that takes momentum steps until its variance estimate is reliable",
        torch.optim.RAdam,
    ),
    Entry(
        "adamax",
        Adamax,
        "beyond",
        "Adam dividing by a running maximum of |g| instead",
        torch.optim.Adamax,
    ),
    Entry("lion", Lion, "beyond", "steps by the sign of an interpolated momentum (Chen et al.)"),
    Entry(
        "ademamix",
        AdEMAMix,
        "beyond",
        "Adam plus a slow second momentum that remembers old gradients (Pagliardini et al.)",
    ),
    Entry(
        "adagrad",
        Adagrad,
        "beyond",
        "divides by the root of the sum of squared gradients",
        torch.optim.Adagrad,
    ),
    Entry(
        "adadelta",
        Adadelta,
        "beyond",
        "RMSprop with lr replaced by the root mean square of past steps",
        torch.optim.Adadelta,
    ),
    Entry(
        "rprop",
        Rprop,
        "beyond",
        "per-weight step sizes grown or shrunk by gradient signs",
        torch.optim.Rprop,
    ),
    Entry(
        "asgd",
        ASGD,
        "beyond",
        "SGD with decaying steps and an average of the weights",
        torch.optim.ASGD,
    ),
    Entry(
        "adafactor",
        Adafactor,
        "beyond",
        "factored second moments: row and column averages of a matrix's squares",
    ),
    Entry("muon", Muon, "beyond", "orthogonalized momentum for matrices, AdamW for the rest"),
    Entry("lamb", LAMB, "beyond", "Adam's step scaled per tensor to the weights' norm"),
    Entry("lars", LARS, "beyond", "momentum SGD with a per-tensor learning rate |w| / |g|"),
    Entry(
        "schedule_free_adamw",
        ScheduleFreeAdamW,
        "beyond",
        "AdamW without a schedule: evaluated at an average of its iterates",
    ),
    Entry(
        "schedule_free_sgd",
        ScheduleFreeSGD,
        "beyond",
        "SGD with momentum without a schedule, evaluated at an average",
    ),
    Entry(
        "prodigy",
        Prodigy,
        "beyond",
        "Adam that estimates its own learning rate from the distance travelled",
    ),
)

#: Every optimizer class, by the name ``optimlab list`` and the lab use.
OPTIMIZERS: dict[str, type[Optimizer]] = {name: e.cls for name, e in REGISTRY.items()}
#: The optimizers beyond the notes, by name.
BEYOND_NOTES: dict[str, type[Optimizer]] = {
    name: e.cls for name, e in REGISTRY.items() if e.family == "beyond"
}

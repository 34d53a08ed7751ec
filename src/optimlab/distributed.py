"""Training on several processes with ``torch.distributed``, as ``torchrun`` starts them.

:func:`optimlab.train.fit` uses this module by itself: under ``torchrun --nproc_per_node=N``
it joins the process group (gloo on the CPU, NCCL on CUDA), wraps the model in
``DistributedDataParallel`` unless it is already wrapped or sharded with FSDP2, gives every
rank its share of each global batch, averages the loss across ranks, and writes checkpoints,
history and progress on rank 0 only. The same script runs unchanged on one process.

Example (``train.py``, started with ``torchrun --standalone --nproc_per_node=2 train.py``)::

    import optimlab, torch
    from optimlab.data import MiniBatches
    from optimlab.train import fit

    optimlab.distributed.init()          # no-op on a single process
    model = torch.nn.Linear(20, 3)
    optimizer = optimlab.Adam(model.parameters(), lr=1e-3)
    plan = MiniBatches(X, y, batch_size=64, seed=0)   # 64 is the global batch: 32 per rank
    fit(model, optimizer, plan, epochs=5, checkpoint_dir="runs/ddp", resume=True)
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .data import MiniBatches


def init(backend: str | None = None, timeout_seconds: float = 600.0) -> Context:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    With ``WORLD_SIZE`` > 1 in the environment (set by torchrun) this initializes
    ``torch.distributed`` with ``backend`` (default: ``"nccl"`` when CUDA is available, else
    ``"gloo"``) and, on CUDA, selects the device ``LOCAL_RANK``. Otherwise it does nothing. It
    returns the :class:`Context` either way, and is safe to call twice.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and dist.is_available() and not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        _import_before_the_group_exists()
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_seconds))
    return context()


def _import_before_the_group_exists() -> None:
    """Import ``torch.distributed.nn.functional`` while ``group.WORLD`` is still None.

    Its functions take ``group=group.WORLD`` as a default argument, evaluated at import: imported
    after ``init_process_group`` (``torch.distributed.optim``, ``_shard`` and others import it),
    the defaults hold the default process group itself, which ``destroy_process_group`` then
    cannot free. The group and its gloo worker threads then live until the interpreter's
    teardown, where a worker thread releasing a finished collective that still refers to Python
    objects (its tensors' Python objects, the ``contextvars.Context`` autograd stashes in the
    thread-local state it copied during backward) waits for the GIL of a finalizing
    interpreter, is ended by ``pthread_exit``, and the forced unwind through a ``noexcept``
    destructor aborts the process ("terminate called without an active exception"). Import
    ``ZeroRedundancyOptimizer`` before :func:`init` too, for the same reason.
    """
    import torch.distributed.nn.functional  # noqa: F401


def context() -> Context:
    """Where this process stands: rank, world size, and what collective operations it needs."""
    if dist.is_available() and dist.is_initialized():
        return Context(rank=dist.get_rank(), world_size=dist.get_world_size())
    return Context(rank=0, world_size=1)


@dataclass(frozen=True)
class Context:
    """The rank of this process among ``world_size`` (1 and rank 0 without a process group)."""

    rank: int
    world_size: int

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and shows progress."""
        return self.rank == 0

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """The sum over ranks of each value (the values themselves on one process)."""
        if not self.active:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=collective_device(device))
        dist.all_reduce(t)
        return t.tolist()

    def sum_later(self, value: float, device: torch.device) -> Callable[[], float]:
        """The sum over ranks of ``value``, started now and read when the returned function is
        called: on a GPU (NCCL) the host then waits only for the reduction, which a later
        step normally finds done, not for the work queued since. Every rank must start and
        read the same sums in the same order, as with any collective."""
        where = collective_device(device)
        t = torch.full((1,), value, dtype=torch.float64, device=where)  # (no copy from host)
        work = dist.all_reduce(t, async_op=True)
        if where.type != "cuda":
            return lambda: (work.wait(), float(t[0]))[1]
        work.wait()  # the current stream waits for the reduction; the host does not
        host = torch.empty(1, dtype=torch.float64, pin_memory=True)
        host.copy_(t, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return lambda: (done.synchronize(), float(host[0]))[1]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (``[obj]`` on one process)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``DistributedDataParallel(model)``, unless it is already DDP or sharded by FSDP2."""
        if not self.active or is_data_parallel(model) or is_fully_sharded(model):
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def share(self, plan: MiniBatches) -> MiniBatches:
        """This rank's share of ``plan`` (whose batch size is the global batch)."""
        if not self.active or plan.world_size == self.world_size:
            if self.active and plan.rank != self.rank:
                raise ValueError(
                    f"Invalid plan: made for rank {plan.rank} but this process is rank {self.rank}"
                )
            return plan
        return plan.shard(self.rank, self.world_size)


def is_data_parallel(model: torch.nn.Module) -> bool:
    from torch.nn.parallel import DistributedDataParallel

    return isinstance(model, DistributedDataParallel)


def is_fully_sharded(model: torch.nn.Module) -> bool:
    """Whether ``model``'s parameters are DTensors, as ``fully_shard`` (FSDP2) makes them."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without DTensor
        return False
    return any(isinstance(p, DTensor) for p in model.parameters())


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (the model itself otherwise)."""
    return model.module if is_data_parallel(model) else model


def collective_device(device: torch.device) -> torch.device:
    """Where the ranks' collectives reduce: ``device`` under NCCL, the CPU under gloo."""
    # NCCL reduces only CUDA tensors; gloo reduces CPU tensors.
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


# --- state of models and optimizers, the same whether sharded or not ----------------------


def model_state(model: torch.nn.Module) -> dict[str, Any]:
    """A full, unsharded model state dict (on every rank; only rank 0 needs to write it)."""
    if is_fully_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=options)
    return unwrap(model).state_dict()


def load_model_state(model: torch.nn.Module, state: dict[str, Any]) -> None:
    if is_fully_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
    else:
        unwrap(model).load_state_dict(state)


def optimizer_state(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict[str, Any]:
    """A full optimizer state dict, gathered from the ranks when the state is sharded.

    Collective for ``ZeroRedundancyOptimizer`` and FSDP2: call it on every rank.
    """
    if _is_zero(optimizer):
        optimizer.consolidate_state_dict(to=0)
        return optimizer.state_dict() if dist.get_rank() == 0 else {}
    if is_fully_sharded(model):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return {"fqn": get_optimizer_state_dict(model, optimizer, options=options)}
    return optimizer.state_dict()


def local_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The optimizer that does the math: the one a ``ZeroRedundancyOptimizer`` wraps (its
    class and hyperparameters are what a checkpoint names), else ``optimizer`` itself."""
    return optimizer.optim if _is_zero(optimizer) else optimizer


def check_zero(optimizer: torch.optim.Optimizer) -> None:
    """Refuse what a ``ZeroRedundancyOptimizer`` cannot run as one process would: it gives
    each rank a share of the parameters to step, so a rule that reads all of a group's
    parameters (Prodigy's step size) would estimate one per rank, and an optimizer that
    evaluates at its average (``eval()``: schedule-free, ASGD) switches only the rank's share;
    FSDP2 (``fully_shard``) or DDP run them."""
    if not _is_zero(optimizer):
        return
    local = optimizer.optim
    name = type(local).__name__
    if getattr(local, "_reads_every_parameter", False):
        why = "its step size is estimated from all of a group's parameters"
    elif getattr(local, "_eval_mode_holds", None) is not None:
        why = "it evaluates and saves at its average (eval()), which ZeRO does not switch to"
    else:
        return
    raise ValueError(
        f"Invalid optimizer: {name} inside a ZeroRedundancyOptimizer, which gives each rank a "
        f"share of the parameters: {why}; shard the parameters with FSDP2 (fully_shard) or "
        "use DDP (no ZeroRedundancyOptimizer)"
    )


def _is_zero(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` is a ``ZeroRedundancyOptimizer``, without importing
    ``torch.distributed.optim`` (about 1 s, and after ``init_process_group`` it would pin the
    default group: see :func:`_import_before_the_group_exists`): whoever made one imported it."""
    module = sys.modules.get("torch.distributed.optim.zero_redundancy_optimizer")
    return module is not None and isinstance(optimizer, module.ZeroRedundancyOptimizer)


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module, state: dict[str, Any]
) -> None:
    """Load what :func:`optimizer_state` returned, however the run that wrote it was sharded
    (one process, DDP, ZeRO or FSDP2), in the form this optimizer and model take: keyed by
    parameter names for FSDP2 (every rank then keeps its shard), by the parameters' positions
    in the optimizer otherwise. The parameters must come in the same order as when saved."""
    if is_fully_sharded(model) and not _is_zero(optimizer):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        by_name = state["fqn"] if "fqn" in state else _keyed_by_name(state, optimizer, model)
        set_optimizer_state_dict(
            model, optimizer, by_name, options=StateDictOptions(full_state_dict=True)
        )
    else:
        optimizer.load_state_dict(_keyed_by_position(state["fqn"]) if "fqn" in state else state)


def _keyed_by_position(state: dict[str, Any]) -> dict[str, Any]:
    """A full optimizer state keyed by parameter names (FSDP2's) as ``Optimizer.state_dict``
    keys it: by the parameters' positions, in the order of the saved groups' lists of names."""
    position: dict[str, int] = {}
    for group in state["param_groups"]:
        for name in group["params"]:
            position.setdefault(name, len(position))
    return {
        "state": {position[name]: values for name, values in state["state"].items()},
        "param_groups": [
            {**group, "params": [position[name] for name in group["params"]]}
            for group in state["param_groups"]
        ],
    }


def _keyed_by_name(
    state: dict[str, Any], optimizer: torch.optim.Optimizer, model: torch.nn.Module
) -> dict[str, Any]:
    """``Optimizer.state_dict``'s form (parameters by position) keyed by the names of this
    ``model``'s parameters, as FSDP2's full state dicts are: position ``i`` of a saved group is
    the ``i``-th parameter of the optimizer's group, as ``load_state_dict`` pairs them."""
    names = {id(p): _canonical_name(name) for name, p in unwrap(model).named_parameters()}
    saved_groups, groups = state["param_groups"], optimizer.param_groups
    sizes = [len(g["params"]) for g in saved_groups], [len(g["params"]) for g in groups]
    if sizes[0] != sizes[1]:
        raise ValueError(
            f"Invalid optimizer state: its parameter groups hold {sizes[0]} parameters, this "
            f"optimizer's {sizes[1]}"
        )
    name_of: dict[Any, str] = {}
    for saved, group in zip(saved_groups, groups):
        for position, p in zip(saved["params"], group["params"]):
            if id(p) not in names:
                raise ValueError(
                    f"Invalid optimizer state for this model: a parameter of shape "
                    f"{tuple(p.shape)} in the optimizer is not one of the model's"
                )
            name_of[position] = names[id(p)]
    return {
        "state": {name_of[position]: values for position, values in state["state"].items()},
        "param_groups": [
            {**saved, "params": [name_of[position] for position in saved["params"]]}
            for saved in saved_groups
        ],
    }


def _canonical_name(name: str) -> str:
    """A parameter's name as ``torch.distributed.checkpoint`` keys its state: without the
    prefixes of ``torch.compile`` and activation checkpointing's wrappers."""
    return name.replace("_orig_mod.", "").replace("_checkpoint_wrapped_module.", "")

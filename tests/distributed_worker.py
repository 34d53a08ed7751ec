"""A training job for the distributed tests: run it with torchrun, or as one plain process.

    torchrun --standalone --nproc_per_node=2 distributed_worker.py --out DIR [options]
    python distributed_worker.py --out DIR [options]

It trains the same float64 MLP on the same data with fit(); the plan's batch size is the
global batch, so 1 and 2 processes see the same batches. Rank 0 saves the final parameters of
each optimizer to DIR/<optimizer>.pt.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import torch

import optimlab
from optimlab.data import MiniBatches
from optimlab.train import Callback, fit

OPTIMIZERS = {
    "sgd": lambda params: optimlab.SGD(params, lr=0.05),
    "momentum": lambda params: optimlab.Momentum(params, lr=0.1, beta=0.9),
    "adam": lambda params: optimlab.Adam(params, lr=1e-2, weight_decay=1e-3),
    # state shaped unlike the parameters: a row and a column average per matrix
    "adafactor": lambda params: optimlab.Adafactor(params, lr=1e-2),
}


def build():
    generator = torch.Generator().manual_seed(42)
    X = torch.randn(96, 8, generator=generator, dtype=torch.float64)
    y = (X[:, 0] * X[:, 1] > 0).long()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
    ).double()
    return model, X, y


class KillAt(Callback):
    """Send this process `number` (SIGKILL) after step `step` (on the first attempt only)."""

    def __init__(self, step: int, number: int = signal.SIGKILL) -> None:
        self.step, self.number = step, number

    def on_step_end(self, state):
        if state.step == self.step and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
            os.kill(os.getpid(), self.number)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--optimizers",
        default="sgd,momentum,adam",
        help="runs, each NAME[@LABEL][:SHARDING]: optimizer NAME of OPTIMIZERS, saved and "
        "checkpointed as LABEL (default NAME), SHARDING ddp, zero or fsdp (default: the flags')",
    )
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=16, help="the global batch")
    parser.add_argument("--zero", action="store_true", help="shard optimizer state (ZeRO)")
    parser.add_argument("--fsdp", action="store_true", help="shard parameters (FSDP2)")
    parser.add_argument("--checkpoint-dir")
    parser.add_argument("--checkpoint-every", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-rank", type=int, default=-1)
    parser.add_argument("--kill-at-step", type=int, default=0)
    parser.add_argument("--kill-signal", default="SIGKILL", help="what --kill-rank receives")
    parser.add_argument("--read-every", type=int, help="fit's read_every")
    parser.add_argument(
        "--preempt-lag", type=int, help="steps until the ranks read their summed signal flags"
    )
    parser.add_argument(
        "--every-optimizer-sharded",
        action="store_true",
        help="every registry configuration under FSDP2 and on one process: DIR/sharded.pt",
    )
    args = parser.parse_args()
    args.runs = [run(spec, args) for spec in args.optimizers.split(",")]
    args.zero |= any(sharding == "zero" for *_, sharding in args.runs)
    args.fsdp |= args.every_optimizer_sharded or any(s == "fsdp" for *_, s in args.runs)

    if args.zero:
        # Before the group exists: zero_redundancy_optimizer's `_broadcast_object(...,
        # group=dist.group.WORLD)` evaluates its default at import, and imported later it would
        # hold the group past destroy_process_group (see optimlab.distributed.init).
        from torch.distributed.optim import ZeroRedundancyOptimizer  # noqa: F401
    if args.preempt_lag is not None:  # as on GPUs, where the sums are read late
        from optimlab.train import loop

        loop._Preemption.lag = args.preempt_lag
    ranks = optimlab.distributed.init()
    try:
        if args.every_optimizer_sharded:
            every_optimizer_sharded(Path(args.out), ranks)
        else:
            train(args, ranks)  # returns holding nothing that holds the process group
    except SystemExit as preempted:  # fit's Preempted: every rank stopped at the same step
        if ranks.active:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
        sys.stdout.flush()
        print(f"rank {ranks.rank} preempted with code {preempted.code}", flush=True)
        os._exit(preempted.code)
    if ranks.active:
        # No rank tears gloo down while another still works (rank 0 saving).
        torch.distributed.barrier()
        # With nothing else holding it, this frees the group and joins its gloo threads now,
        # while the interpreter is whole. A gloo thread that outlives it into the interpreter's
        # teardown can release there the last reference to a finished collective that still
        # refers to Python objects (tensors, the contextvars.Context autograd stashes in the
        # thread-local state a collective issued in backward copies): it waits for the GIL,
        # Python ends it with pthread_exit, and the unwind through a noexcept destructor aborts
        # ("terminate called without an active exception").
        torch.distributed.destroy_process_group()
        if args.fsdp:
            # FSDP2 only: DTensor's module-level caches (sharding propagation, the
            # redistribute planner, MeshTopoInfo) keep the DeviceMesh, hence the group and its
            # threads, alive until the interpreter's teardown, which torch 2.13 gives no way
            # to prevent (pytorch/pytorch#190489, #179291): leave without it.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        leftover = _gloo_work_threads()
        if leftover:
            sys.exit(f"the process group outlived destroy_process_group: {leftover} threads")


def shard(model: torch.nn.Module, world_size: int) -> None:
    """FSDP2: each Linear layer's parameters, then the rest, sharded over the ranks."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world_size,))
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)


def every_optimizer_sharded(out: Path, ranks: optimlab.distributed.Context, steps=4) -> None:
    """Every configuration of every optimizer in the registry, `steps` steps on the model
    sharded by FSDP2 (each rank half of each batch of 16) and, in the same process, on an
    unsharded copy taking the whole batch; rank 0 saves both final parameters (or the error
    the sharded run raised) by variant to DIR/sharded.pt."""
    from optimlab.optim.registry import REGISTRY

    results = {}
    for variant in (v for entry in REGISTRY.values() for v in entry.variants()):
        model, X, y = build()
        single = build()[0]
        shard(model, ranks.world_size)
        try:
            sharded_optimizer = variant.make(model.parameters())
            single_optimizer = variant.make(single.parameters())
            for step in range(steps):
                batch = slice(16 * step, 16 * step + 16)
                mine = slice(16 * step + 8 * ranks.rank, 16 * step + 8 * ranks.rank + 8)
                for net, optimizer, rows in (
                    (model, sharded_optimizer, mine),
                    (single, single_optimizer, batch),
                ):
                    optimizer.zero_grad()
                    torch.nn.functional.cross_entropy(net(X[rows]), y[rows]).backward()
                    optimizer.step()
            result = {"sharded": optimlab.distributed.model_state(model)}
            result["single"] = single.state_dict()
        except Exception as error:  # noqa: BLE001 - reported by the test, variant by variant
            result = {"error": f"{type(error).__name__}: {error}"}
        results[variant.id] = result
    if ranks.is_main:
        out.mkdir(parents=True, exist_ok=True)
        torch.save(results, out / "sharded.pt")


def run(spec: str, args: argparse.Namespace) -> tuple[str, str, str]:
    """(optimizer name, label, sharding) of a run ``NAME[@LABEL][:SHARDING]``."""
    spec, _, sharding = spec.partition(":")
    name, _, label = spec.partition("@")
    default = "fsdp" if args.fsdp else "zero" if args.zero else "ddp"
    return name, label or name, sharding or default


def train(args: argparse.Namespace, ranks: optimlab.distributed.Context) -> None:
    out = Path(args.out)
    for name, label, sharding in args.runs:
        model, X, y = build()
        if sharding == "fsdp":
            shard(model, ranks.world_size)
        if sharding == "zero":
            from torch.distributed.optim import ZeroRedundancyOptimizer

            reference = OPTIMIZERS[name]([torch.zeros(1, requires_grad=True)])
            defaults = {k: v for k, v in reference.defaults.items()}
            optimizer = ZeroRedundancyOptimizer(
                model.parameters(), optimizer_class=type(reference), **defaults
            )
        else:
            optimizer = OPTIMIZERS[name](model.parameters())
        callbacks = []
        if ranks.rank == args.kill_rank:
            callbacks.append(KillAt(args.kill_at_step, getattr(signal, args.kill_signal)))
        plan = MiniBatches(X, y, batch_size=args.batch, seed=3)
        checkpoint_dir = Path(args.checkpoint_dir) / label if args.checkpoint_dir else None
        result = fit(
            model,
            optimizer,
            plan,
            steps=args.steps,
            read_every=args.read_every,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            callbacks=callbacks,
            progress=False,
        )
        state = optimlab.distributed.model_state(model)
        if ranks.is_main:
            out.mkdir(parents=True, exist_ok=True)
            torch.save(state, out / f"{label}.pt")
            torch.save([row["loss"] for row in result.history], out / f"{label}-losses.pt")
            resumed = result.resumed_from.name if result.resumed_from else "nothing"
            print(f"{label} resumed from {resumed}", flush=True)


def _gloo_work_threads() -> int:
    """How many of gloo's work threads ("pt_gloo_runloop", the threads that run and release
    collectives) this process has: 0 once its groups are destroyed (Linux; 0 elsewhere)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0
    count = 0
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                count += comm.read().startswith("pt_gloo_runloop")
        except OSError:  # the thread ended meanwhile
            continue
    return count


if __name__ == "__main__":
    main()

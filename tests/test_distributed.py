"""The training loop on torch.distributed: 2 CPU processes with gloo, started by torchrun.

Each test launches real processes (torchrun --standalone picks a free port), waits with a
timeout, and kills the whole process group if anything hangs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("distributed_worker.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]

# These tests start several processes each; run them one at a time, on one xdist worker.
pytestmark = pytest.mark.xdist_group("distributed")


# Only catches a hang: a run takes 5-40 s, longer on a loaded machine, and is never cut short
# for being slow.
HANG = 600


def run(*args, processes=2, restarts=0, timeout=HANG, check=True):
    """The output of the worker on `processes` ranks; with `check`, its exit code must be 0."""
    if processes == 1:
        command = [sys.executable, str(WORKER), *map(str, args)]
    else:
        command = [
            *TORCHRUN,
            f"--nproc_per_node={processes}",
            f"--max-restarts={restarts}",
            str(WORKER),
            *map(str, args),
        ]
    # torch 2.13's agent shares its rendezvous store with the workers by default, and restarted
    # gloo workers then read stale peer addresses (pytorch/pytorch#135712): turn sharing off.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"timed out after {timeout} s:\n{output[-3000:]}")
    assert proc.returncode == 0 or not check, output[-3000:]
    return output


@pytest.fixture(scope="module")
def whole_adam(tmp_path_factory):
    """Adam's parameters after 12 uninterrupted steps on 2 ranks: what every interrupted run
    below must end with (one run for them all: the module's tests share one xdist worker)."""
    folder = tmp_path_factory.mktemp("whole")
    run("--out", folder, "--optimizers", "adam", "--steps", 12)
    return params(folder, "adam")


def params(folder, name):
    return torch.load(Path(folder) / f"{name}.pt", weights_only=True)


def assert_same(a, b, exact=False):
    assert a.keys() == b.keys()
    for key in a:
        if exact:
            assert torch.equal(a[key], b[key]), key
        else:
            # DDP averages the ranks' gradients (an all-reduce of 2 partial sums, then / 2)
            # where one process sums 16 samples at once: a few ulp per step apart, over the
            # workers' 12 steps at most ~100 ulp = 2e-14 of the entries (of order 1)
            torch.testing.assert_close(a[key], b[key], rtol=1e-12, atol=1e-14)


def test_ddp_on_two_processes_equals_one_process_with_the_global_batch(tmp_path):
    # 2 ranks taking 8 samples each per step == 1 process taking 16, for SGD, Momentum, Adam.
    run("--out", tmp_path / "one", processes=1)
    run("--out", tmp_path / "two")
    for name in ("sgd", "momentum", "adam"):
        assert_same(params(tmp_path / "one", name), params(tmp_path / "two", name))
        assert not torch.equal(
            params(tmp_path / "one", name)["0.weight"], _initial_state()["0.weight"]
        )


def test_ranks_that_read_the_losses_every_few_steps_record_the_same_run(tmp_path):
    # read_every=5: each rank keeps its loss sums on the device and the ranks sum them at each
    # read, where reading every step sums each step's: the same numbers, bitwise
    run("--out", tmp_path / "each", "--optimizers", "adam")
    run("--out", tmp_path / "few", "--optimizers", "adam", "--read-every", 5)
    assert_same(params(tmp_path / "each", "adam"), params(tmp_path / "few", "adam"), exact=True)
    losses = [params(tmp_path / folder, "adam-losses") for folder in ("each", "few")]
    assert len(losses[0]) == 12 and losses[0] == losses[1]


@pytest.mark.parametrize("at_step, stopped", [(5, 7), (11, 12)], ids=["mid-run", "at-the-end"])
def test_ranks_that_read_their_signal_flags_late_stop_together_and_resume_exactly(
    tmp_path, at_step, stopped, whole_adam
):
    # As on GPUs (NCCL): the ranks' summed flags are read 2 steps after the step that started
    # the sum, so no step waits; a SIGTERM to rank 1 at step 5 stops both after step 7, one at
    # step 11 (of 12) when the last sums are read, after step 12; the resumed run is exact
    arguments = ["--out", tmp_path / "preempted", "--optimizers", "adam", "--steps", 12]
    arguments += ["--checkpoint-dir", tmp_path / "ck", "--checkpoint-every", 4, "--resume"]
    arguments += ["--preempt-lag", 2]
    signal_rank_1 = ["--kill-rank", 1, "--kill-at-step", at_step, "--kill-signal", "SIGTERM"]
    output = run(*arguments, *signal_rank_1, check=False)
    assert "rank 0 preempted with code 143" in output, output[-3000:]
    assert "rank 1 preempted with code 143" in output, output[-3000:]
    assert f"SIGTERM received: stopped after step {stopped}" in output, output[-3000:]
    assert (tmp_path / "ck" / "adam" / f"ckpt-{stopped:08d}.pt").exists()
    run(*arguments)  # resumed
    assert_same(whole_adam, params(tmp_path / "preempted", "adam"), exact=True)


def _initial_state():
    sys.path.insert(0, str(WORKER.parent))
    from distributed_worker import build

    return build()[0].state_dict()


def test_zero_redundancy_optimizer_with_optimlab_adam(tmp_path):
    run("--out", tmp_path / "one", "--optimizers", "adam", processes=1)
    run("--out", tmp_path / "zero", "--optimizers", "adam", "--zero")
    assert_same(params(tmp_path / "one", "adam"), params(tmp_path / "zero", "adam"))


def test_a_rank_killed_with_sigkill_restarts_from_the_newest_checkpoint(tmp_path, whole_adam):
    output = run(
        "--out",
        tmp_path / "killed",
        "--optimizers",
        "adam",
        "--steps",
        12,
        "--checkpoint-dir",
        tmp_path / "ck",
        "--checkpoint-every",
        3,
        "--resume",
        "--kill-rank",
        1,
        "--kill-at-step",
        7,
        restarts=1,
    )
    assert "exitcode: -9" in output  # rank 1 really died...
    assert "abandoned run" not in output  # ...and the restart resumed instead of starting over
    assert_same(whole_adam, params(tmp_path / "killed", "adam"), exact=True)


def test_a_sigterm_to_one_rank_stops_every_rank_at_one_step_and_the_resumed_run_is_exact(
    tmp_path, whole_adam
):
    arguments = ["--out", tmp_path / "preempted", "--optimizers", "adam", "--steps", 12]
    arguments += ["--checkpoint-dir", tmp_path / "ck", "--checkpoint-every", 4, "--resume"]
    signal_rank_1 = ["--kill-rank", 1, "--kill-at-step", 5, "--kill-signal", "SIGTERM"]
    output = run(*arguments, *signal_rank_1, check=False)
    # rank 1 got the signal; both ranks stopped after step 5, and rank 0 wrote its checkpoint
    assert "rank 0 preempted with code 143" in output, output[-3000:]
    assert "rank 1 preempted with code 143" in output, output[-3000:]
    assert "SIGTERM received: stopped after step 5" in output, output[-3000:]
    assert (tmp_path / "ck" / "adam" / "ckpt-00000005.pt").exists()
    run(*arguments)  # resumed from step 5
    assert_same(whole_adam, params(tmp_path / "preempted", "adam"), exact=True)


def test_every_optimizer_under_fsdp2_equals_one_process(tmp_path):
    # Every configuration in the registry (SGD with momentum, Nesterov, ...; the rules that
    # reduce whole tensors: LAMB, LARS, Adafactor, Prodigy, Muon), 4 steps on a model sharded
    # over 2 ranks, each taking half of every batch, against the same optimizer on an unsharded
    # copy taking the whole batch, in one launch.
    run("--out", tmp_path, "--every-optimizer-sharded")
    results = torch.load(tmp_path / "sharded.pt", weights_only=True)
    from optimlab.optim.registry import REGISTRY

    assert set(REGISTRY) == {variant.split("-")[0] for variant in results}
    initial = _initial_state()
    failed = {variant: r["error"] for variant, r in results.items() if "error" in r}
    assert not failed, failed
    for variant, result in results.items():
        sharded, single = result["sharded"], result["single"]
        assert any(not torch.equal(sharded[k], initial[k]) for k in initial), variant
        if variant.startswith("muon"):
            # Newton-Schulz runs in bfloat16, and its products of sharded matrices add their
            # halves in another order: each entry (at most ~1.2) of the orthogonalized update
            # may round differently (2**-8 relative), and the step is lr = 0.02 times at most
            # sqrt(rows / cols) = sqrt(2) times it: 4 steps * 0.02 * 1.7 * 2**-8 ~ 5e-4.
            torch.testing.assert_close(sharded, single, rtol=0, atol=5e-4, msg=variant)
        else:
            # the sharded gradients are averages of 2 half-batch means, the norms (LAMB, LARS,
            # Adafactor) and sums (Prodigy) of sharded tensors the sums of 2 partial ones: a
            # few ulp per step apart from one process's, and within 4 steps ~50 ulp at most of
            # entries of order 1 (the worst seen is 7e-16).
            assert_same(sharded, single)


def test_checkpoints_resume_on_any_number_of_processes_and_any_sharding(tmp_path):
    # Checkpoints hold full, gathered state: one written after 6 steps on 1 process, under DDP,
    # under ZeRO or under FSDP2 on 2 ranks continues to 12 steps under another of them, and
    # ends where 12 uninterrupted steps end. Adam, and Adafactor, whose state is shaped unlike
    # its parameters. Few launches: each holds several runs, each run with its own sharding.
    resumed = {  # the sharding of a resumed run: those of the checkpoints it continues
        "fsdp": ("one", "ddp", "zero", "fsdp"),
        "zero": ("one", "fsdp", "zero"),
        "ddp": ("fsdp",),
        "one": ("zero", "fsdp"),
    }
    optimizers = ("adam", "adafactor")
    checkpoints = tmp_path / "ck"

    def train(steps, runs, processes=2):
        """Each optimizer trained to `steps` in each run (label, sharding): the output."""
        specs = [f"{name}@{name}-{label}:{how}" for name in optimizers for label, how in runs]
        arguments = ["--optimizers", ",".join(specs), "--steps", steps, "--resume"]
        arguments += ["--out", tmp_path / "out", "--checkpoint-dir", checkpoints]
        return run(*arguments, processes=processes)

    train(6, [("one", "ddp")], processes=1)
    train(6, [(sharding, sharding) for sharding in ("ddp", "zero", "fsdp")])
    import shutil

    for name in optimizers:
        for sharding, sources in resumed.items():
            for source in sources:
                copy = checkpoints / f"{name}-{source}-on-{sharding}"
                shutil.copytree(checkpoints / f"{name}-{source}", copy)
    # ("whole", without a checkpoint, starts at the beginning: the reference)
    on_two = [("whole", "ddp")]
    on_two += [(f"{s}-on-{how}", how) for how in ("fsdp", "zero", "ddp") for s in resumed[how]]
    output = train(12, on_two)
    output += train(12, [(f"{s}-on-one", "ddp") for s in resumed["one"]], processes=1)
    for name in optimizers:
        whole = params(tmp_path / "out", f"{name}-whole")
        for sharding, sources in resumed.items():
            for source in sources:
                label = f"{name}-{source}-on-{sharding}"
                assert f"{label} resumed from ckpt-00000006.pt" in output, output[-3000:]
                assert_same(whole, params(tmp_path / "out", label))


ZERO_REFUSALS = """
import sys, torch, torch.distributed as dist
from torch.distributed.optim import ZeroRedundancyOptimizer
import optimlab
from optimlab.data import MiniBatches
from optimlab.train import fit

dist.init_process_group("gloo", init_method=f"file://{sys.argv[1]}", rank=0, world_size=1)
X, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
for name in ("Prodigy", "ScheduleFreeAdamW", "ASGD", "Adam"):
    model = torch.nn.Linear(3, 2)
    zero = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=getattr(optimlab, name))
    try:
        fit(model, zero, MiniBatches(X, y, batch_size=8), steps=1, progress=False)
        print(name, "ran")
    except ValueError as error:
        print(name, "refused:", error)
dist.destroy_process_group()
"""


def test_zero_refuses_what_a_share_of_the_parameters_cannot_compute(tmp_path):
    """ZeroRedundancyOptimizer steps a share of the parameters per rank: Prodigy would
    estimate its step size from the share, and the optimizers that evaluate at an average
    would switch only the share; fit refuses them, naming them and what to use instead."""
    script = tmp_path / "zero.py"
    script.write_text(ZERO_REFUSALS)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert said["Adam"] == "ran"
    assert "all of a group's parameters" in said["Prodigy"]
    for name in ("ScheduleFreeAdamW", "ASGD"):
        assert said[name].startswith(f"refused: Invalid optimizer: {name} inside a Zero")
        assert "evaluates and saves at its average" in said[name] and "FSDP2" in said[name]

"""Tests for optimlab.data.MiniBatches: the mini-batch plans of batch/stochastic/mini-batch GD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import Dataset, TensorDataset

from optimlab.data import MiniBatches

M = 23  # prime, so no batch size in the tests divides it


def make_data(m: int = M, features: int = 3):
    # Row i of X starts with i, so a batch names the samples it holds; y = 10 * i checks alignment.
    X = torch.arange(m, dtype=torch.float32)[:, None] * torch.ones(features)
    X[:, 1:] += torch.randn(m, features - 1, generator=torch.Generator().manual_seed(7))
    y = torch.arange(m) * 10
    return X, y


def ids(batch) -> list[int]:
    xb, yb = batch
    got = xb[:, 0].long()
    assert torch.equal(yb, got * 10), "X and y rows must stay aligned"
    return got.tolist()


def epoch_ids(plan) -> list[list[int]]:
    return [ids(b) for b in plan]


def assert_batches_equal(a, b) -> None:
    assert len(a) == len(b)
    for ba, bb in zip(a, b, strict=True):
        assert len(ba) == len(bb)
        for ta, tb in zip(ba, bb, strict=True):
            assert ta.dtype == tb.dtype and torch.equal(ta, tb)


# -- every sample once per epoch, sizes, len() -------------------------------------------------


@pytest.mark.parametrize("batch_size", [None, 1, 4, 7, M, 100])
def test_every_sample_exactly_once_per_epoch(batch_size):
    X, y = make_data()
    plan = MiniBatches(X, y, batch_size=batch_size, seed=3)
    for _ in range(3):
        flat = [i for b in epoch_ids(plan) for i in b]
        assert sorted(flat) == list(range(M))


@pytest.mark.parametrize("batch_size", [1, 4, 7, M])
def test_drop_last_gives_floor_m_over_d_full_batches_of_distinct_samples(batch_size):
    X, y = make_data()
    plan = MiniBatches(X, y, batch_size=batch_size, seed=3, drop_last=True)
    expected = (M // batch_size) * batch_size
    for _ in range(3):
        batches = epoch_ids(plan)
        assert len(batches) == len(plan) == M // batch_size
        assert all(len(b) == batch_size for b in batches)
        flat = [i for b in batches for i in b]
        assert len(set(flat)) == len(flat) == expected


def test_drop_last_with_batch_gd_keeps_all_samples():
    X, y = make_data()
    (batch,) = list(MiniBatches(X, y, batch_size=None, drop_last=True))
    assert sorted(ids(batch)) == list(range(M))


def test_batch_gd_is_one_batch_of_all_m_samples():
    X, y = make_data()
    plan = MiniBatches(X, y)
    assert len(plan) == 1
    batches = list(plan)
    assert len(batches) == 1
    assert batches[0][0].shape == X.shape and batches[0][1].shape == y.shape


def test_stochastic_gd_is_m_batches_of_one_sample():
    X, y = make_data()
    plan = MiniBatches(X, y, batch_size=1)
    batches = list(plan)
    assert len(plan) == len(batches) == M
    assert all(xb.shape == (1, X.shape[1]) and yb.shape == (1,) for xb, yb in batches)


@pytest.mark.parametrize("batch_size", [2, 5, 10, 22])
def test_minibatch_gd_has_ceil_m_over_d_batches_and_a_smaller_last_one(batch_size):
    X, y = make_data()
    plan = MiniBatches(X, y, batch_size=batch_size)
    sizes = [len(yb) for _, yb in plan]
    assert len(plan) == len(sizes) == math.ceil(M / batch_size)
    assert sizes[:-1] == [batch_size] * (len(sizes) - 1)
    assert sizes[-1] == M - (len(sizes) - 1) * batch_size < batch_size


def test_iterating_advances_the_epoch_even_when_breaking_after_the_last_batch():
    X, y = make_data()
    plan = MiniBatches(X, y, batch_size=5)
    assert plan.epoch == 0
    list(plan)
    assert plan.epoch == 1 and plan.position == 0
    for i, _ in enumerate(plan):
        if i == len(plan) - 1:
            break
    assert plan.state_dict()["epoch"] == 2 and plan.state_dict()["position"] == 0


# -- shuffles ------------------------------------------------------------------------------------


def test_shuffles_differ_between_epochs_and_repeat_with_one_seed():
    X, y = make_data()
    a = MiniBatches(X, y, batch_size=4, seed=11)
    b = MiniBatches(X, y, batch_size=4, seed=11)
    epochs_a = [epoch_ids(a) for _ in range(4)]
    epochs_b = [epoch_ids(b) for _ in range(4)]
    assert epochs_a == epochs_b
    assert len({str(e) for e in epochs_a}) == 4


def test_shuffles_differ_across_seeds():
    X, y = make_data()
    first = {str(epoch_ids(MiniBatches(X, y, batch_size=4, seed=s))) for s in range(5)}
    assert len(first) == 5


def test_permutation_is_a_function_of_seed_and_epoch_only():
    X, y = make_data()
    plan = MiniBatches(X, y, batch_size=4, seed=5)
    for _ in range(3):
        list(plan)
    fresh = MiniBatches(X, y, batch_size=4, seed=5)
    fresh.set_epoch(3)
    assert epoch_ids(plan) == epoch_ids(fresh)


def test_shuffle_false_gives_the_original_order_every_epoch():
    X, y = make_data()
    plan = MiniBatches(X, y, batch_size=5, shuffle=False)
    expected = [list(range(s, min(s + 5, M))) for s in range(0, M, 5)]
    assert epoch_ids(plan) == expected
    assert epoch_ids(plan) == expected


# -- resume --------------------------------------------------------------------------------------


@pytest.mark.parametrize("taken", [0, 1, 3, 5])
def test_resume_mid_epoch_from_a_saved_state(tmp_path, taken):
    X, y = make_data()
    reference = MiniBatches(X, y, batch_size=4, seed=9)
    ref_epochs = [list(reference) for _ in range(3)]

    plan = MiniBatches(X, y, batch_size=4, seed=9)
    list(plan)  # epoch 0
    it = iter(plan)
    for _ in range(taken):
        next(it)
    state = plan.state_dict()
    assert all(type(v) is int for v in state.values())
    assert state["epoch"] == 1 and state["position"] == taken
    torch.save(state, tmp_path / "plan.pt")

    # A new object built with another seed: the state must bring its own.
    resumed = MiniBatches(X, y, batch_size=4, seed=0)
    resumed.load_state_dict(torch.load(tmp_path / "plan.pt", weights_only=True))
    assert_batches_equal(list(resumed), ref_epochs[1][taken:])
    assert_batches_equal(list(resumed), ref_epochs[2])


def test_resume_after_the_last_batch_of_an_epoch_starts_the_next_epoch():
    X, y = make_data()
    reference = MiniBatches(X, y, batch_size=4, seed=2)
    ref_epochs = [epoch_ids(reference) for _ in range(2)]
    plan = MiniBatches(X, y, batch_size=4, seed=2)
    it = iter(plan)
    for _ in range(len(plan)):
        next(it)
    resumed = MiniBatches(X, y, batch_size=4, seed=2)
    resumed.load_state_dict(plan.state_dict())
    assert epoch_ids(resumed) == ref_epochs[1]


def test_load_state_dict_rejects_a_state_of_another_plan():
    X, y = make_data()
    state = MiniBatches(X, y, batch_size=4).state_dict()
    with pytest.raises(ValueError, match=r"state\['batch_size'\]=4 does not match this plan's 5"):
        MiniBatches(X, y, batch_size=5).load_state_dict(state)
    with pytest.raises(ValueError, match=r"state\['position'\] must be in \[0, 6\], got 7"):
        MiniBatches(X, y, batch_size=4).load_state_dict({**state, "position": 7})


# -- several ranks -------------------------------------------------------------------------------


def rank_epochs(X, y, world_size, **kwargs):
    plans = [MiniBatches(X, y, rank=r, world_size=world_size, **kwargs) for r in range(world_size)]
    return plans, [epoch_ids(p) for p in plans]


@pytest.mark.parametrize(
    "m, batch_size, world_size",
    [
        (23, 3, 2),  # short last global batch of 5 >= world_size
        (23, 4, 4),  # short last global batch of 7 >= world_size
        (26, 4, 3),  # short last global batch of 2 < world_size: merged into the previous one
        (24, 3, 4),  # no remainder
        (23, None, 4),  # batch GD: every rank gets an even share of all samples
        (5, 1, 5),
    ],
)
def test_ranks_are_disjoint_cover_the_epoch_and_take_the_same_number_of_steps(
    m, batch_size, world_size
):
    X, y = make_data(m)
    plans, per_rank = rank_epochs(X, y, world_size, batch_size=batch_size, seed=4)
    steps = len(plans[0])
    assert all(len(p) == steps and len(b) == steps for p, b in zip(plans, per_rank, strict=True))
    flat = [i for batches in per_rank for b in batches for i in b]
    assert sorted(flat) == list(range(m))
    for k in range(steps):
        sizes = [len(batches[k]) for batches in per_rank]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_ranks_split_the_same_shuffled_epoch_as_one_process_with_a_global_batch():
    X, y = make_data()
    world_size, batch_size = 3, 2
    single = epoch_ids(MiniBatches(X, y, batch_size=batch_size * world_size, seed=8))
    _, per_rank = rank_epochs(X, y, world_size, batch_size=batch_size, seed=8)
    joined = [sum((batches[k] for batches in per_rank), []) for k in range(len(per_rank[0]))]
    assert joined == single


def test_ranks_with_drop_last_take_full_batches_only():
    X, y = make_data()
    _, per_rank = rank_epochs(X, y, 2, batch_size=4, seed=1, drop_last=True)
    assert all(len(b) == 4 for batches in per_rank for b in batches)
    flat = [i for batches in per_rank for b in batches for i in b]
    assert len(set(flat)) == len(flat) == (M // 8) * 8


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 40),
    batch_size=st.one_of(st.none(), st.integers(1, 12)),
    world_size=st.integers(1, 4),
    seed=st.integers(-(2**70), 2**70),
)
def test_property_ranks_partition_every_epoch(m, batch_size, world_size, seed):
    ws = world_size
    if m < ws:
        with pytest.raises(ValueError, match="world_size"):
            MiniBatches(torch.arange(m), batch_size=batch_size, world_size=ws)
        return
    plans = [
        MiniBatches(torch.arange(m), batch_size=batch_size, seed=seed, rank=r, world_size=ws)
        for r in range(ws)
    ]
    for _ in range(2):
        flat = [int(i) for p in plans for (xb,) in p for i in xb]
        assert sorted(flat) == list(range(m))
    assert len({len(p) for p in plans}) == 1


# -- sources -------------------------------------------------------------------------------------


class PairDataset(Dataset):
    """A plain map-style Dataset that is not a TensorDataset, to exercise per-sample collation."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], self.y[i]


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("make_source", [PairDataset, TensorDataset], ids=["Dataset", "Tensor"])
def test_dataset_source_gives_the_same_batches_as_tensors(make_source, shuffle):
    X, y = make_data()
    expected = MiniBatches(X, y, batch_size=4, seed=6, shuffle=shuffle)
    got = MiniBatches(make_source(X, y), batch_size=4, seed=6, shuffle=shuffle)
    for _ in range(2):
        assert_batches_equal(list(got), list(expected))


class SpyMemmap(np.memmap):
    """Records how the plan indexes the file, to check it never reads the whole array."""

    keys: list = []

    def __getitem__(self, key):
        SpyMemmap.keys.append(key)
        return super().__getitem__(key)


@pytest.mark.parametrize("shuffle", [True, False])
def test_memmap_source_gives_the_same_batches_and_reads_only_batch_rows(tmp_path, shuffle):
    X, y = make_data()
    for name, t in (("X", X), ("y", y)):
        path = tmp_path / f"{name}.npy"
        arr = np.lib.format.open_memmap(path, "w+", t.numpy().dtype, tuple(t.shape))
        arr[:] = t.numpy()
        arr.flush()
        del arr
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    ym = np.load(tmp_path / "y.npy", mmap_mode="r")
    assert isinstance(Xm, np.memmap)

    expected = MiniBatches(X, y, batch_size=5, seed=12, shuffle=shuffle)
    SpyMemmap.keys = []
    got = MiniBatches(
        Xm.view(SpyMemmap), ym.view(SpyMemmap), batch_size=5, seed=12, shuffle=shuffle
    )
    for _ in range(2):
        assert_batches_equal(list(got), list(expected))
    assert SpyMemmap.keys, "the memmap was not indexed through its own __getitem__"
    for key in SpyMemmap.keys:
        if isinstance(key, slice):
            assert key.stop - key.start <= 5
        else:
            key = np.asarray(key)
            assert len(key) <= 5 and np.all(np.diff(key) > 0), "reads must be sorted row sets"


def test_numpy_arrays_are_wrapped_without_a_copy():
    X, y = make_data()
    Xn, yn = X.numpy().copy(), y.numpy().copy()
    plan = MiniBatches(Xn, yn, shuffle=False)
    ((xb, yb),) = list(plan)
    assert xb.data_ptr() == Xn.ctypes.data and yb.data_ptr() == yn.ctypes.data
    assert_batches_equal(
        list(MiniBatches(Xn, yn, batch_size=4, seed=1)),
        list(MiniBatches(X, y, batch_size=4, seed=1)),
    )


def test_tensors_numpy_cannot_view_take_the_torch_gather_and_agree():
    X, y = make_data()
    expected = list(MiniBatches(X, y, batch_size=4, seed=3))
    Xg = X.clone().requires_grad_(True)
    got = list(MiniBatches(Xg.to(torch.bfloat16), y, batch_size=4, seed=3))
    for (xe, ye), (xb, yb) in zip(expected, got, strict=True):
        assert xb.dtype == torch.bfloat16 and torch.equal(xb, xe.to(torch.bfloat16))
        assert torch.equal(yb, ye)


@pytest.mark.parametrize("world_size", [1, 3])
def test_batches_gathered_in_chunks_equal_batches_gathered_one_by_one(monkeypatch, world_size):
    # A sample is 3 float32 + 1 int64 = 20 bytes; 120-byte chunks hold 6 rows = 3 batches of 2,
    # so an epoch of 23 samples spans several chunks and the last one is cut short.
    import optimlab.data as data

    X, y = make_data()
    plans = {}
    for name, chunk_bytes in (("one by one", 1), ("chunks", 120)):
        monkeypatch.setattr(data, "_CHUNK_BYTES", chunk_bytes)
        plans[name] = [
            MiniBatches(X, y, batch_size=2, seed=5, rank=r, world_size=world_size)
            for r in range(world_size)
        ]
    assert plans["one by one"][0]._chunk_steps == 1 and plans["chunks"][0]._chunk_steps == 3
    for rank in range(world_size):
        single, chunked = plans["one by one"][rank], plans["chunks"][rank]
        for _ in range(2):
            assert_batches_equal(list(chunked), list(single))
        # Resume in the middle of a chunk: the next chunk starts where the plan stands.
        expected = list(single)
        it = iter(chunked)
        taken = [next(it) for _ in range(2)]
        resumed = MiniBatches(X, y, batch_size=2, rank=rank, world_size=world_size)
        resumed.load_state_dict(chunked.state_dict())
        assert_batches_equal(taken + list(resumed), expected)
    if world_size == 1:  # the batches are the epoch's permutation, cut in order
        plan = MiniBatches(X, y, batch_size=2, seed=5)
        assert plan._chunk_steps == 3
        got = [i for b in epoch_ids(plan) for i in b]
        assert got == plan.permutation(0).tolist()


@pytest.mark.parametrize("threaded", [False, True])
def test_both_cpu_gathers_give_the_same_batches(monkeypatch, threaded):
    # MiniBatches times NumPy's take against index_select and keeps the faster: either one must
    # give exactly the batches the permutation says.
    import optimlab.data as data

    monkeypatch.setattr(data._GatherChooser, "choose", lambda self: threaded)
    monkeypatch.setattr(data, "_THREADED_MIN_BYTES", 0)  # small gathers are timed too
    previous = torch.get_num_threads()
    torch.set_num_threads(2)  # with one thread the serial take is used without timing
    try:
        X, y = make_data()
        w = torch.arange(M, dtype=torch.float64)[:, None, None] * torch.ones(2, 3)  # 3-D rows
        plan = MiniBatches((X, y, w), batch_size=4, seed=2)
        for epoch in range(2):
            order = plan.permutation(epoch)
            batches = list(plan)
            for k, (xb, yb, wb) in enumerate(batches):
                idx = order[4 * k : 4 * k + 4]
                assert torch.equal(xb, X[idx]) and torch.equal(yb, y[idx])
                assert torch.equal(wb, w[idx]) and xb.is_contiguous()
    finally:
        torch.set_num_threads(previous)


def test_the_gather_chooser_keeps_the_faster_and_retries_the_other_ever_less_often():
    from optimlab.data import _GatherChooser

    chooser = _GatherChooser()
    cost = {False: 2.0, True: 1.0}  # seconds per row; the threaded gather is faster at first
    threaded_calls, timed_calls = [], []
    for call in range(1, 200):
        if call == 60:
            cost = {False: 2.0, True: 50.0}  # then the machine gets busy
        threaded = chooser.choose()
        if threaded:
            threaded_calls.append(call)
        if chooser.timed:
            timed_calls.append(call)
            chooser.record(threaded, cost[threaded])
    # Trials are 4 timed calls in a row: calls 1-4 measure the serial gather, 5-8 the threaded
    # one, which wins; the serial one is tried again 8 calls later (16-19), then 16 and 32 calls
    # later (35-38, 70-73) as it keeps losing. The gather in use is timed every 4th call: the
    # threaded one slows down at call 60, and once its last 4 timed calls were all slow (60, 64,
    # 68, 76) the serial one takes over; the threaded one is tried again 64 calls after the last
    # trial (call 137, which alone ends the trial: 25 times the serial cost), loses, and waits 128
    # calls for the next.
    expected = [*range(5, 16), *range(20, 35), *range(39, 70), 74, 75, 76, 137]
    assert threaded_calls == expected
    trials = [*range(1, 9), *range(16, 20), *range(35, 39), *range(70, 74), 137]
    assert set(trials) <= set(timed_calls)
    sampled = [c for c in timed_calls if c not in trials]
    assert sampled == [c for c in range(9, 200) if c % 4 == 0 and c not in trials]


def test_any_number_of_aligned_tensors():
    X, y = make_data()
    w = torch.arange(M) * 100
    for xb, yb, wb in MiniBatches((X, y, w), batch_size=6):
        assert torch.equal(yb, xb[:, 0].long() * 10) and torch.equal(wb, yb * 10)
    ((only,),) = list(MiniBatches(X))  # X alone: 1-tuples
    assert only.shape == X.shape


# -- bad inputs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"batch_size": 0}, ValueError, r"batch_size must be a positive int or None, got 0"),
        ({"batch_size": -3}, ValueError, r"batch_size .* got -3"),
        ({"batch_size": 2.5}, TypeError, r"batch_size .* got 2\.5"),
        ({"batch_size": "4"}, TypeError, r"batch_size .* got '4'"),
        ({"batch_size": True}, TypeError, r"batch_size .* got True"),
        ({"seed": 1.5}, TypeError, r"seed must be an int, got 1\.5"),
        ({"seed": "0"}, TypeError, r"seed must be an int, got '0'"),
        ({"rank": 2, "world_size": 2}, ValueError, r"rank must be in \[0, world_size=2\), got 2"),
        ({"rank": -1, "world_size": 2}, ValueError, r"rank .* got -1"),
        ({"world_size": 0}, ValueError, r"world_size must be a positive int, got 0"),
        ({"world_size": 24}, ValueError, r"world_size=24 .* got m=23"),
        ({"shuffle": "yes"}, TypeError, r"shuffle must be a bool, got 'yes'"),
        ({"batch_size": 30, "drop_last": True}, ValueError, r"drop_last=True .* leaves no batch"),
    ],
)
def test_bad_arguments_are_rejected_with_their_name_and_value(kwargs, error, message):
    X, y = make_data()
    with pytest.raises(error, match=message):
        MiniBatches(X, y, **kwargs)


def test_bad_data_is_rejected():
    X, y = make_data()
    with pytest.raises(ValueError, match=r"X and y must have the same number of samples.*23, 22"):
        MiniBatches(X, y[:-1])
    with pytest.raises(ValueError, match=r"X is empty.*m=0"):
        MiniBatches(X[:0], y[:0])
    with pytest.raises(ValueError, match=r"X\[0\] and X\[1\] must have the same number"):
        MiniBatches((X, y[:3]))
    with pytest.raises(TypeError, match=r"y must be None when X is a Dataset"):
        MiniBatches(PairDataset(X, y), y)
    with pytest.raises(ValueError, match=r"X must have a sample dimension"):
        MiniBatches(torch.tensor(1.0))

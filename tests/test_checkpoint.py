import errno
import hashlib
import io
import os
import pickle
import queue
import random
import shutil
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import optimlab.train.checkpoint as ckpt
from optimlab.train.checkpoint import (
    CheckpointError,
    CheckpointManager,
    CheckpointWriteError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

SRC = Path(__file__).resolve().parents[1] / "src"


class Foo:
    pass


def _tmp_files(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".tmp"))


def _model_and_optimizer(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Tanh(), torch.nn.Linear(8, 1)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.99))
    return model, opt


def _train(model, opt, steps):
    losses = []
    for _ in range(steps):
        x = torch.randn(16, 4)
        y = torch.from_numpy(np.random.rand(16, 1).astype(np.float32)) + random.random()
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _payload(model, opt, step):
    return {
        "step": step,
        "epoch": 1,
        "lr": 1e-2,
        "best_loss": float("inf"),
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "history": [
            {"step": i, "loss": 0.5 / (i + 1), "tags": ("a", None, True)} for i in range(4)
        ],
        "rng": capture_rng_state(),
        "meta": {"dtype": torch.float32, "shape": torch.Size([2, 3]), 7: b"raw"},
    }


def _save_small(path, step=0):
    return save_checkpoint(path, {"step": step, "w": torch.arange(1000.0) + step})


# ---------------------------------------------------------------------------------------------
# save / load


def test_round_trip_realistic_payload_and_exact_resume(tmp_path):
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    model, opt = _model_and_optimizer()
    _train(model, opt, 3)
    path = save_checkpoint(tmp_path / "run.pt", _payload(model, opt, step=3))
    assert path == tmp_path / "run.pt"
    assert _tmp_files(tmp_path) == []
    expected_losses = _train(model, opt, 3)
    expected_params = [p.detach().clone() for p in model.parameters()]

    raw = torch.load(path, weights_only=True)  # readable without our loader too
    assert raw["step"] == 3
    loaded = load_checkpoint(path)
    assert loaded["history"][2] == {"step": 2, "loss": 0.5 / 3, "tags": ("a", None, True)}
    assert loaded["best_loss"] == float("inf")
    assert loaded["meta"] == {"dtype": torch.float32, "shape": torch.Size([2, 3]), 7: b"raw"}

    torch.manual_seed(999)  # scramble everything before resuming
    np.random.seed(999)
    random.seed(999)
    model2, opt2 = _model_and_optimizer(seed=5)
    model2.load_state_dict(loaded["model"])
    opt2.load_state_dict(loaded["optimizer"])
    restore_rng_state(loaded["rng"])
    assert _train(model2, opt2, 3) == expected_losses  # dropout, data and noise repeat exactly
    for p, q in zip(model2.parameters(), expected_params, strict=True):
        assert torch.equal(p, q)


def test_save_overwrites_atomically_and_map_location(tmp_path):
    path = tmp_path / "c.pt"
    _save_small(path, 1)
    _save_small(path, 2)
    assert load_checkpoint(path, map_location="cpu")["step"] == 2
    assert _tmp_files(tmp_path) == []


def test_save_into_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _save_small(tmp_path / "nope" / "c.pt")


def test_truncated_file_raises_checkpoint_error(tmp_path):
    path = tmp_path / "trunc.pt"
    _save_small(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert info.value.path == path
    assert info.value.__cause__ is not None
    assert "Traceback" not in str(info.value)


def test_empty_file_raises_checkpoint_error(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_text_file_raises_checkpoint_error(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("this is not a checkpoint\nreally\n")
    with pytest.raises(CheckpointError, match="looks like a text file") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert info.value.__cause__ is not None


def test_garbage_bytes_and_flipped_bytes(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match=str(path).replace("\\", "\\\\")):
        load_checkpoint(path)
    # a corrupted zip directory is detected as well
    good = tmp_path / "good.pt"
    _save_small(good)
    data = bytearray(good.read_bytes())
    data[-40:] = b"\x00" * 40
    good.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="good.pt"):
        load_checkpoint(good)


def test_non_checkpoint_pickles(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match=r"list\.pt.*object of type list, not a checkpoint"):
        load_checkpoint(path)
    path = tmp_path / "obj.pt"
    torch.save({"x": Foo()}, path)
    with pytest.raises(CheckpointError, match=r"obj\.pt.*Foo.*weights_only loading refuses"):
        load_checkpoint(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_bad_map_location_is_not_reported_as_corruption(tmp_path):
    path = _save_small(tmp_path / "c.pt")
    with pytest.raises(RuntimeError) as info:
        load_checkpoint(path, map_location="cuda")
    assert not isinstance(info.value, CheckpointError)


def test_disallowed_payload_is_refused_before_writing(tmp_path):
    path = tmp_path / "c.pt"
    _save_small(path, 1)
    before = path.read_bytes()
    bad = {"step": 2, "history": [0.1, 0.2, 0.3, Foo()]}
    with pytest.raises(TypeError, match=r"payload\['history'\]\[3\]: got object of type Foo"):
        save_checkpoint(path, bad)
    with pytest.raises(
        TypeError,
        match=r"payload\['a'\]\['b'\]: got object of type float64"
        r" \(convert NumPy values",
    ):
        save_checkpoint(tmp_path / "other.pt", {"a": {"b": np.float64(1.0)}})
    with pytest.raises(TypeError, match=r"payload\['s'\]: got object of type set"):
        save_checkpoint(tmp_path / "other.pt", {"s": {1, 2}})
    with pytest.raises(TypeError, match="payload must be a dict, got object of type list"):
        save_checkpoint(tmp_path / "other.pt", [1, 2])
    with pytest.raises(TypeError, match=r"payload: dict key .*Foo"):
        save_checkpoint(tmp_path / "other.pt", {Foo(): 1})
    cyclic = {"a": []}
    cyclic["a"].append(cyclic)
    with pytest.raises(ValueError, match=r"payload\['a'\]\[0\]: the payload contains itself"):
        save_checkpoint(tmp_path / "other.pt", cyclic)
    shared = [torch.zeros(2)]
    save_checkpoint(tmp_path / "shared.pt", {"x": shared, "y": shared})  # sharing is fine
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.pt", "shared.pt"]


@pytest.mark.parametrize("exc", [OSError("No space left on device"), KeyboardInterrupt()])
def test_failure_during_write_keeps_previous_file(tmp_path, monkeypatch, exc):
    path = tmp_path / "c.pt"
    _save_small(path, 1)
    before = path.read_bytes()
    real_save = torch.save

    def half_then_fail(obj, f, *args, **kwargs):
        import io

        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        raise exc

    monkeypatch.setattr(ckpt.torch, "save", half_then_fail)
    with pytest.raises(type(exc)):
        _save_small(path, 2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["c.pt"]


def test_failure_during_manager_save_keeps_checkpoints(tmp_path, monkeypatch):
    m = CheckpointManager(tmp_path, keep_last=1)
    m.save(1, {"step": 1})

    def fail(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        m.save(2, {"step": 2})
    monkeypatch.undo()
    assert m.list() == [m.path_for(1)]
    assert _tmp_files(tmp_path) == []
    assert m.load_latest()[1] == {"step": 1}


# ---------------------------------------------------------------------------------------------
# CheckpointManager


def test_manager_names_listing_and_pruning(tmp_path):
    m = CheckpointManager(tmp_path / "run", keep_last=2)
    assert (tmp_path / "run").is_dir()
    assert m.list() == [] and m.latest() is None and m.load_latest() is None
    for step in (5, 7, 123, 300):
        p = m.save(step, {"step": step})
        assert p.name == f"ckpt-{step:08d}.pt"
    (tmp_path / "run" / "unrelated.txt").write_text("x")
    (tmp_path / "run" / "ckpt-123.pt").write_text("not ours")  # not a name we write
    assert [p.name for p in m.list()] == ["ckpt-00000300.pt", "ckpt-00000123.pt"]
    assert m.latest() == m.path_for(300)
    path, payload = m.load_latest()
    assert path == m.path_for(300) and payload == {"step": 300}
    m.save(10**9, {"step": 10**9})  # more than 8 digits still sorts by step
    assert m.latest().name == "ckpt-1000000000.pt"
    assert len(m.list()) == 2


def test_keep_last_one_and_resave_same_step(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=1, prefix="model")
    for step in range(4):
        m.save(step, {"step": step})
    assert m.list() == [tmp_path / "model-00000003.pt"]
    m.save(3, {"step": 3, "again": True})
    assert m.load_latest()[1] == {"step": 3, "again": True}


def test_saving_an_older_step_removes_newer_abandoned_checkpoints(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=3)
    for step in (10, 20, 30):
        m.save(step, {"step": step})
    with pytest.warns(UserWarning, match=r"ckpt-00000030\.pt.*abandoned"):
        m.save(25, {"step": 25})
    assert [p.name for p in m.list()] == [
        "ckpt-00000025.pt",
        "ckpt-00000020.pt",
        "ckpt-00000010.pt",
    ]


def test_load_latest_falls_back_past_corrupted_files(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=5)
    for step in (1, 2, 3):
        m.save(step, {"step": step, "w": torch.full((100,), float(step))})
    newest = m.path_for(3)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match=r"ckpt-00000003\.pt: truncated or corrupted") as rec:
        path, payload = m.load_latest()
    assert len(rec) == 1
    assert path == m.path_for(2) and payload["step"] == 2
    assert torch.equal(payload["w"], torch.full((100,), 2.0))

    m.path_for(2).write_bytes(b"")
    with pytest.warns(UserWarning) as rec:
        path, _ = m.load_latest()
    assert path == m.path_for(1)
    assert [str(r.message) for r in rec][1].find("empty file") > 0

    m.path_for(1).write_text("garbage")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError) as info:
        m.load_latest()
    msg = str(info.value)
    assert str(tmp_path) in msg and "none of the 3 checkpoints" in msg
    assert "ckpt-00000001.pt: not a checkpoint" in msg


def test_leftover_temporary_files_are_ignored_and_cleaned(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=2)
    m.save(1, {"step": 1})
    leftover = tmp_path / ".ckpt-00000002.pt.0123456789ab.tmp"
    leftover.write_bytes(b"PK\x03\x04half a checkpoint")
    other = tmp_path / ".notes.tmp"  # not ours: left alone
    other.write_text("x")
    assert m.list() == [m.path_for(1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert m.load_latest()[0] == m.path_for(1)
    m.save(2, {"step": 2})
    assert not leftover.exists() and other.exists()
    assert m.remove_temporary_files() == []


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"keep_last": 0}, ValueError, r"keep_last must be an int >= 1, got 0"),
        ({"keep_last": -2}, ValueError, r"keep_last must be an int >= 1, got -2"),
        ({"keep_last": 1.5}, TypeError, r"keep_last must be an int >= 1, got 1\.5"),
        ({"keep_last": True}, TypeError, r"keep_last must be an int >= 1, got True"),
        ({"prefix": ""}, ValueError, r"prefix must be a non-empty string"),
        ({"prefix": "a/b"}, ValueError, r"prefix must be a plain file name part"),
        ({"prefix": ".hidden"}, ValueError, r"prefix must be a plain file name part"),
    ],
)
def test_manager_argument_validation(tmp_path, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        CheckpointManager(tmp_path, **kwargs)


def test_step_validation(tmp_path):
    m = CheckpointManager(tmp_path)
    with pytest.raises(ValueError, match=r"step must be an int >= 0, got -1"):
        m.save(-1, {})
    with pytest.raises(TypeError, match=r"step must be an int >= 0, got 1\.5"):
        m.save(1.5, {})
    with pytest.raises(TypeError, match=r"step must be an int >= 0, got True"):
        m.save(True, {})
    with pytest.raises(TypeError, match=r"payload\['x'\]: got object of type Foo"):
        m.save(1, {"x": Foo()})
    assert m.save(np.int64(4), {"step": 4}).name == "ckpt-00000004.pt"
    assert os.listdir(tmp_path) == ["ckpt-00000004.pt"]


# ---------------------------------------------------------------------------------------------
# digests: a file whose bytes changed since it was written is refused

DIGEST_MAGIC = b"optimlab-checkpoint-sha256:"


def _flip(path, index, mask=0xFF):
    data = bytearray(path.read_bytes())
    data[index] ^= mask
    path.write_bytes(bytes(data))


def _tensor_offset(path, value):
    """Where float32 ``value`` is stored in the file (it occurs once in the payloads used)."""
    data = path.read_bytes()
    needle = struct.pack("<f", value)
    assert data.count(needle) == 1
    return data.index(needle)


def test_digest_is_the_zip_comment_and_plain_readers_still_read_the_file(tmp_path):
    path = _save_small(tmp_path / "c.pt", 3)
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:  # still a valid zip archive
        comment = archive.comment
        assert archive.testzip() is None
    assert comment.startswith(DIGEST_MAGIC) and data.endswith(comment)
    covered = data[: len(data) - len(comment) - 2]  # all but the comment and its length
    assert comment[len(DIGEST_MAGIC) :] == hashlib.sha256(covered).hexdigest().encode()
    assert struct.unpack("<H", data[-len(comment) - 2 : -len(comment)]) == (len(comment),)
    for kwargs in ({}, {"mmap": True}):
        raw = torch.load(path, weights_only=True, **kwargs)
        assert raw["step"] == 3 and torch.equal(raw["w"], torch.arange(1000.0) + 3)


def test_one_flipped_byte_in_tensor_data_is_refused(tmp_path):
    path = _save_small(tmp_path / "c.pt", 0)
    _flip(path, _tensor_offset(path, 500.0) + 1)
    # torch alone reads it without complaint, with another value: what the digest is for
    assert torch.load(path, weights_only=True)["w"][500] != 500.0
    with pytest.raises(
        CheckpointError, match=r"c\.pt: its content does not match the SHA-256 digest"
    ) as info:
        load_checkpoint(path)
    assert info.value.path == path and "cannot be trusted" in info.value.reason


@pytest.mark.parametrize("added", [10, 4096, 100_000])
@pytest.mark.parametrize("flipped", [False, True])
def test_bytes_added_after_the_digest_record_are_refused(tmp_path, added, flipped):
    """A copy that pads the file (block padding) or an append moves the digest record away
    from the end, where it is looked for; such a file loaded unverified, a flipped data byte
    included. Refused, saying how many bytes follow the record."""
    path = _save_small(tmp_path / "c.pt", 0)
    if flipped:
        _flip(path, _tensor_offset(path, 500.0) + 1)
    with open(path, "ab") as f:
        f.write(b"\0" * added)
    with pytest.raises(CheckpointError, match=r"its digest record is damaged|bytes follow its"):
        load_checkpoint(path)
    if added >= 100:
        with pytest.raises(CheckpointError, match=rf"{added} bytes follow its digest record"):
            load_checkpoint(path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and symbolic links")
def test_saving_again_keeps_the_files_mode_and_a_symbolic_link(tmp_path):
    """The new file replaces the old by a rename: it had the umask's mode (a checkpoint made
    private became readable by all) and replaced a symbolic link by a file."""
    path = save_checkpoint(tmp_path / "c.pt", {"step": 1})
    path.chmod(0o600)
    save_checkpoint(path, {"step": 2})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and load_checkpoint(path)["step"] == 2
    (tmp_path / "link.pt").symlink_to(path)
    assert save_checkpoint(tmp_path / "link.pt", {"step": 3}) == path
    assert (tmp_path / "link.pt").is_symlink() and load_checkpoint(path)["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "link.pt"]


@pytest.mark.parametrize("mask", [0x01, 0xFF])
def test_every_single_byte_change_is_refused(tmp_path, mask):
    good = save_checkpoint(tmp_path / "good.pt", {"step": 1, "w": torch.arange(8.0)})
    data = good.read_bytes()
    path = tmp_path / "c.pt"
    reasons = set()
    for i in range(len(data)):
        changed = bytearray(data)
        changed[i] ^= mask
        path.write_bytes(bytes(changed))
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        reasons.add(info.value.reason.split(":")[0].split(" (")[0])
    assert reasons == {
        "its content does not match the SHA-256 digest recorded when it was written",
        "its digest record is damaged",  # the comment's length, the marker
    }


def test_files_without_digest_still_load(tmp_path):
    # what the previous version wrote: torch.save's output as it is
    m = CheckpointManager(tmp_path, keep_last=3)
    payload = {"step": 4, "w": torch.arange(10.0)}
    torch.save(payload, m.path_for(4))
    with zipfile.ZipFile(m.path_for(4)) as archive:
        assert archive.comment == b""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_checkpoint(m.path_for(4))
        path, latest = m.load_latest()
    assert path == m.path_for(4)
    for got in (loaded, latest):
        assert got["step"] == 4 and torch.equal(got["w"], payload["w"])
    m.save(5, {"step": 5})  # the next one has a digest again
    with zipfile.ZipFile(m.path_for(5)) as archive:
        assert archive.comment.startswith(DIGEST_MAGIC)


def test_torch_output_of_another_layout_is_written_without_digest(tmp_path, monkeypatch):
    real_save = torch.save

    def with_own_comment(obj, f, *args, **kwargs):  # a torch that writes a comment itself
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[:-2] + struct.pack("<H", 3) + b"abc")

    monkeypatch.setattr(ckpt.torch, "save", with_own_comment)
    with pytest.warns(UserWarning, match=r"c\.pt was written without a digest"):
        path = _save_small(tmp_path / "c.pt", 2)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 2


def test_the_file_torch_writes_to_behaves_like_a_file_for_fault_injection(tmp_path, monkeypatch):
    real_save = torch.save
    seen = {}

    def save(obj, f, *args, **kwargs):  # what tests/resume_worker.py does to kill mid-write
        buf = io.BytesIO()
        real_save(obj, buf)
        real_save(obj, f, *args, **kwargs)
        f.flush()
        seen["tell"], seen["size"], seen["fileno"] = f.tell(), len(buf.getvalue()), f.fileno()
        f.truncate(f.tell() // 2)
        raise KeyboardInterrupt  # stands for the SIGKILL

    monkeypatch.setattr(ckpt.torch, "save", save)
    with pytest.raises(KeyboardInterrupt):
        _save_small(tmp_path / "c.pt")
    monkeypatch.undo()
    assert seen["tell"] == seen["size"] and seen["fileno"] >= 0
    assert os.listdir(tmp_path) == []
    with pytest.raises(AttributeError):
        ckpt._DigestWriter(io.BytesIO()).seek(0)  # the digest needs bytes in order


def test_load_latest_skips_a_checkpoint_whose_digest_fails(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=3)
    for step in (1, 2, 3):
        m.save(step, {"step": step, "w": torch.arange(100.0) + 1000 * step})
    _flip(m.path_for(3), _tensor_offset(m.path_for(3), 3042.0), 0x01)
    with pytest.warns(UserWarning) as rec:
        path, payload = m.load_latest()
    assert [str(r.message) for r in rec] == [
        f"skipping checkpoint {m.path_for(3)}: its content does not match the SHA-256 digest "
        "recorded when it was written (damaged on disk or in a copy since): its data cannot be "
        "trusted; trying an older one"
    ]
    assert path == m.path_for(2)
    assert torch.equal(payload["w"], torch.arange(100.0) + 2000)


# ---------------------------------------------------------------------------------------------
# load_latest(validate=...): a checkpoint that loads but has the wrong structure


def _needs_model(payload):
    payload["model"]  # KeyError if missing
    if not isinstance(payload["step"], int):
        raise TypeError(f"step is a {type(payload['step']).__name__}, not an int")
    if payload["step"] < 0:
        raise ValueError(f"step {payload['step']} is negative")


def test_load_latest_validate_skips_payloads_of_the_wrong_structure(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=5)
    m.save(1, {"step": 1, "model": {"w": torch.ones(2)}})
    m.save(2, {"step": -2, "model": {}})
    m.save(3, {"step": "3", "model": {}})
    m.save(4, {"step": 4, "weights": {}})
    with pytest.warns(UserWarning) as rec:
        path, payload = m.load_latest(validate=_needs_model)
    assert path == m.path_for(1) and torch.equal(payload["model"]["w"], torch.ones(2))
    assert [str(r.message) for r in rec] == [
        f"skipping checkpoint {m.path_for(4)}: it loads but does not hold what this run "
        "expects (KeyError: 'model'); trying an older one",
        f"skipping checkpoint {m.path_for(3)}: it loads but does not hold what this run "
        "expects (TypeError: step is a str, not an int); trying an older one",
        f"skipping checkpoint {m.path_for(2)}: it loads but does not hold what this run "
        "expects (ValueError: step -2 is negative); trying an older one",
    ]
    with warnings.catch_warnings():  # without validate, the newest is taken as before
        warnings.simplefilter("error")
        assert m.load_latest()[0] == m.path_for(4)
        assert m.load_latest(None, None)[0] == m.path_for(4)


def test_load_latest_validate_none_pass_and_other_errors(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=5)
    m.save(1, {"step": 1})
    m.save(2, {"step": 2})
    m.path_for(2).write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError) as info:
        m.load_latest(validate=_needs_model)
    msg = str(info.value)
    assert "none of the 2 checkpoints" in msg
    assert "ckpt-00000002.pt: empty file" in msg
    assert "ckpt-00000001.pt: it loads but does not hold what this run expects (KeyError" in msg

    def buggy(payload):
        raise RuntimeError("a bug in the validator")

    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="a bug in the validator"):
        m.load_latest(validate=buggy)  # not a structure problem: not hidden by a fallback
    with pytest.raises(TypeError, match="validate must be callable or None"):
        m.load_latest(validate="model")


# ---------------------------------------------------------------------------------------------
# storage faults while saving: a clear error, no temporary file, previous checkpoints intact


def _storage_fault_setup(tmp_path):
    m = CheckpointManager(tmp_path / "run", keep_last=2)
    m.save(1, {"step": 1, "w": torch.arange(10_000.0)})
    m.save(2, {"step": 2, "w": torch.arange(10_000.0) + 2})
    return m, {p: p.read_bytes() for p in m.list()}


def _assert_nothing_lost(m, before):
    assert _tmp_files(m.folder) == []
    assert {p: p.read_bytes() for p in m.list()} == before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path, payload = m.load_latest()
    assert path == m.path_for(2) and torch.equal(payload["w"], torch.arange(10_000.0) + 2)
    # and once the fault is gone, saving goes on where it stopped
    m.save(3, {"step": 3})
    assert m.load_latest()[1] == {"step": 3}


def _big(step):
    return {"step": step, "w": torch.arange(100_000.0) + step}


def _big_size(tmp_path):
    return save_checkpoint(tmp_path / "size.pt", _big(3)).stat().st_size


def _full_disk_after(monkeypatch, room):
    """Every file opened by os.fdopen(fd, 'wb') refuses to grow past ``room`` bytes (ENOSPC),
    as the operating system does on a full disk: a short write, then an error."""
    real_fdopen = os.fdopen

    class FullDisk(io.FileIO):
        def write(self, b):
            left = room - self.tell()
            if left <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(memoryview(b).cast("B")[:left])

    def fdopen(fd, mode="r", *args, **kwargs):
        if mode != "wb":
            return real_fdopen(fd, mode, *args, **kwargs)
        return io.BufferedWriter(FullDisk(fd, "w"))

    monkeypatch.setattr(ckpt.os, "fdopen", fdopen)


@pytest.mark.parametrize("where", [0, 100, 0.5, -60, -1])
def test_disk_full_during_save(tmp_path, monkeypatch, where):
    m, before = _storage_fault_setup(tmp_path)
    size = _big_size(tmp_path)
    room = int(where * size) if isinstance(where, float) else where % size
    _full_disk_after(monkeypatch, room)
    path = m.path_for(3)
    with pytest.raises(CheckpointWriteError) as info:
        m.save(3, _big(3))
    monkeypatch.undo()
    e = info.value
    assert isinstance(e, OSError) and e.errno == errno.ENOSPC and e.path == path
    assert str(e) == (
        f"cannot save checkpoint {path}: {os.strerror(errno.ENOSPC)}; free space on the disk "
        f"that holds {m.folder}, or write checkpoints to another folder; no file was left "
        "behind and the previous checkpoints are unchanged"
    )
    assert isinstance(e.__cause__, OSError) and e.__cause__.errno == errno.ENOSPC
    assert "\n" not in str(e)
    _assert_nothing_lost(m, before)


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.EROFS, "is on a read-only file system: write checkpoints to a writable folder"),
        (errno.EACCES, "writable for this user (chmod u+w), or write checkpoints to another"),
        (errno.EPERM, "writable for this user (chmod u+w), or write checkpoints to another"),
    ],
)
def test_folder_refuses_new_files(tmp_path, monkeypatch, code, advice):
    m, before = _storage_fault_setup(tmp_path)
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if str(path).endswith(".tmp"):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(ckpt.os, "open", refusing_open)
    with pytest.raises(CheckpointWriteError) as info:
        m.save(3, {"step": 3})
    monkeypatch.undo()
    assert info.value.errno == code
    msg = str(info.value)
    assert msg.startswith(f"cannot save checkpoint {m.path_for(3)}: cannot create a file in")
    assert advice in msg and str(m.folder) in msg
    _assert_nothing_lost(m, before)


@pytest.mark.parametrize("stage", ["fsync", "replace"])
def test_failure_to_sync_or_rename(tmp_path, monkeypatch, stage):
    m, before = _storage_fault_setup(tmp_path)

    def fail(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(ckpt.os, stage, fail)
    with pytest.raises(CheckpointWriteError, match=r"ckpt-00000003\.pt: .*disk works") as info:
        m.save(3, {"step": 3})
    monkeypatch.undo()
    assert info.value.errno == errno.EIO
    _assert_nothing_lost(m, before)


def test_failure_to_sync_the_folder_after_the_rename(tmp_path, monkeypatch):
    m, _ = _storage_fault_setup(tmp_path)
    real_fsync = os.fsync
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the file's fsync passes, the folder's fails
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_fsync(fd)

    monkeypatch.setattr(ckpt.os, "fsync", fsync)
    with pytest.raises(CheckpointWriteError, match="in place but may not survive a power loss"):
        m.save(3, {"step": 3})
    monkeypatch.undo()
    assert m.load_latest()[1] == {"step": 3}
    assert _tmp_files(m.folder) == []


def test_failed_pruning_warns_after_a_good_save(tmp_path, monkeypatch):
    m = CheckpointManager(tmp_path, keep_last=1)
    m.save(1, {"step": 1})
    real_unlink = Path.unlink

    def unlink(self, *args, **kwargs):
        if self.name.startswith("ckpt-"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.warns(UserWarning, match=r"cannot delete old checkpoint .*ckpt-00000001\.pt"):
        assert m.save(2, {"step": 2}) == m.path_for(2)
    monkeypatch.undo()
    assert m.load_latest()[1] == {"step": 2}


_SAVE_INTO_READ_ONLY = """
import errno, sys
from optimlab.train.checkpoint import CheckpointManager, CheckpointWriteError
m = CheckpointManager(sys.argv[1], keep_last=2)
try:
    m.save(3, {"step": 3})
except CheckpointWriteError as error:
    assert "chmod u+w" in str(error) and error.errno == errno.EACCES, error
    print("refused")
"""


def test_read_only_folder_by_permissions(tmp_path):
    m, before = _storage_fault_setup(tmp_path)
    os.chmod(m.folder, 0o500)
    try:
        if os.access(m.folder, os.W_OK):
            # root writes through permissions (CAP_DAC_OVERRIDE): save from a process that
            # has given that capability up, as an unprivileged user would be refused
            if shutil.which("setpriv") is None:
                pytest.skip("running as root, and no setpriv to drop CAP_DAC_OVERRIDE")
            drop = "-dac_override,-dac_read_search"
            command = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}"]
            command += [sys.executable, "-c", _SAVE_INTO_READ_ONLY, str(m.folder)]
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0 and done.stdout.strip() == "refused", done.stderr
        else:
            with pytest.raises(CheckpointWriteError, match=r"chmod u\+w") as info:
                m.save(3, {"step": 3})
            assert info.value.errno == errno.EACCES
            with pytest.raises(CheckpointWriteError, match="cannot create the folder") as info:
                CheckpointManager(m.folder / "sub")
            assert info.value.errno == errno.EACCES
    finally:
        os.chmod(m.folder, 0o700)
    _assert_nothing_lost(m, before)


def test_errors_survive_pickling(tmp_path):
    for e in (
        CheckpointError(tmp_path / "c.pt", "empty file (0 bytes)"),
        CheckpointWriteError(tmp_path / "c.pt", "disk full; free space", errno.ENOSPC),
        CheckpointWriteError(tmp_path / "c.pt", "something"),
    ):
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and str(back) == str(e) and back.path == e.path
        assert getattr(back, "errno", None) == getattr(e, "errno", None)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs, mounted where this process may mount one (root on Linux); else skip."""
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root on Linux")
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=1m", "optimlab-test", str(folder)]
    done = subprocess.run(mount, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_real_full_disk_and_read_only_file_system(small_tmpfs):
    m = CheckpointManager(small_tmpfs / "run", keep_last=2)
    m.save(1, {"step": 1, "w": torch.arange(10_000.0)})
    m.save(2, {"step": 2, "w": torch.arange(10_000.0) + 2})
    before = {p: p.read_bytes() for p in m.list()}
    with pytest.raises(CheckpointWriteError, match="free space on the disk") as info:
        m.save(3, {"step": 3, "w": torch.zeros(1 << 20)})  # 4 MiB on a 1 MiB disk
    assert info.value.errno == errno.ENOSPC
    assert sorted(os.listdir(m.folder)) == sorted(p.name for p in before)
    assert {p: p.read_bytes() for p in m.list()} == before

    remount = ["mount", "-o", "remount,ro", str(small_tmpfs)]
    subprocess.run(remount, check=True, capture_output=True)
    with pytest.raises(CheckpointWriteError, match="read-only file system") as info:
        m.save(3, {"step": 3})
    assert info.value.errno == errno.EROFS
    with pytest.raises(CheckpointWriteError, match="cannot create the folder") as info:
        CheckpointManager(small_tmpfs / "other")
    assert info.value.errno == errno.EROFS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path, payload = m.load_latest()
    assert path == m.path_for(2) and torch.equal(payload["w"], torch.arange(10_000.0) + 2)


# ---------------------------------------------------------------------------------------------
# random number generator states


def _draws():
    return (
        torch.rand(5).tolist(),
        torch.randn(3).tolist(),
        np.random.rand(5).tolist(),
        np.random.standard_normal(3).tolist(),
        [random.random() for _ in range(5)],
        [random.gauss(0.0, 1.0) for _ in range(3)],
    )


def test_rng_state_round_trip_exact(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    # leave a cached gaussian in NumPy and Python so that part of the state matters too
    np.random.standard_normal()
    random.gauss(0.0, 1.0)
    state = capture_rng_state()
    first = _draws()
    assert _draws() != first

    restore_rng_state(state)
    assert _draws() == first

    path = save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    loaded = torch.load(path, weights_only=True)["rng"]
    _draws()
    restore_rng_state(loaded)
    assert _draws() == first
    restore_rng_state(load_checkpoint(path)["rng"])
    assert _draws() == first


def test_rng_state_contents():
    state = capture_rng_state()
    assert state["torch"].dtype == torch.uint8
    assert state["numpy"]["keys"].shape == (624,)
    version, internal, gauss_next = state["python"]
    assert isinstance(version, int) and len(internal) == 625
    assert all(type(x) is int for x in internal)
    assert ("cuda" in state) == torch.cuda.is_available()
    restore_rng_state({})  # nothing to restore is fine


# ---------------------------------------------------------------------------------------------
# a writer killed with SIGKILL at random moments

WRITER = textwrap.dedent(
    """
    import sys
    import torch
    from optimlab.train.checkpoint import CheckpointManager

    N = 1 << 20
    m = CheckpointManager(sys.argv[1], keep_last=2)
    resumed = m.load_latest()
    step = 0 if resumed is None else resumed[1]["step"] + 1
    print("ready", step, flush=True)
    while True:
        data = torch.arange(N, dtype=torch.float64) * 0.5 + step
        m.save(step, {"step": step, "data": data, "sum": float(data.sum()), "pad": [step] * 100})
        print("saved", step, flush=True)
        step += 1
    """
)


def _expected(step):
    return torch.arange(1 << 20, dtype=torch.float64) * 0.5 + step


#: Only catches a writer that hangs: never reached by one that is merely slow (a loaded
#: machine), since the test waits for the writer's own lines, not for a time.
HANG = 300.0


class _Lines:
    """The lines a process prints, read by a thread: ``next()`` waits for the next one (or for
    the end of the output, ``None``) and fails only if nothing comes for ``HANG`` seconds."""

    def __init__(self, stream):
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def next(self, what):
        try:
            return self._queue.get(timeout=HANG)
        except queue.Empty:
            pytest.fail(f"the writer hung: no {what} within {HANG:.0f} s")

    def rest(self):
        """Every line up to the end of the output (after the process has ended)."""
        lines = []
        while (line := self.next("end of output")) is not None:
            lines.append(line)
        return lines


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_writes_never_corrupts_the_latest_checkpoint(tmp_path):
    # Each round waits for the writer's "saved" lines (1 to 3 of them), then kills it at a
    # random point of the save that follows. Events, not times, decide when: on a loaded
    # machine the writer is slower, and the test waits for it.
    rounds = 3  # each writer spends ~2-3 s importing torch: keep the test fast
    rng = random.Random(20240607)
    folder = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    m = CheckpointManager(folder, keep_last=2)
    last_loaded = -1
    for round_ in range(rounds):
        errors = tmp_path / f"writer-{round_}.err"  # a file: a full pipe would block the writer
        with open(errors, "w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(folder)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=env,
            )
        try:
            lines = _Lines(proc.stdout)
            ready = (lines.next("ready line") or "").split()
            assert ready and ready[0] == "ready", errors.read_text()
            assert int(ready[1]) == last_loaded + 1  # the writer resumed where we expect
            saved = []
            for _ in range(rng.randint(1, 3)):  # at least one new checkpoint each round
                line = lines.next("saved line")
                assert line is not None and line.startswith("saved"), line
                saved.append(int(line.split()[1]))
            # The next save has begun: kill it somewhere in its ~0.1 s (or later: harmless,
            # the kill then lands in a later save). The delay only spreads the kill points.
            time.sleep(rng.uniform(0.0, 0.1))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=HANG) == -signal.SIGKILL
            for line in lines.rest():  # the writer's last words before the kill
                if not line.endswith("\n"):
                    continue  # cut short by the kill
                words = line.split()
                assert len(words) == 2 and words[0] == "saved", line
                saved.append(int(words[1]))

            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no file may be corrupted: no fallback warning
                result = m.load_latest()
            assert result is not None
            path, payload = result
            step = payload["step"]
            assert path == m.path_for(step)
            assert torch.equal(payload["data"], _expected(step))
            assert payload["sum"] == float(_expected(step).sum())
            assert payload["pad"] == [step] * 100
            # every checkpoint that save() reported as written survived
            assert step >= max(saved)
            assert step > last_loaded  # this round saved at least one more
            for p in m.list():  # every remaining checkpoint is complete, temporary files aside
                other = load_checkpoint(p)
                assert p == m.path_for(other["step"])
                assert torch.equal(other["data"], _expected(other["step"]))
            last_loaded = step
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
    assert last_loaded >= rounds - 1

"""The list-operation backends agree bitwise, and each operation computes what PyTorch's does."""

from __future__ import annotations

import pytest
import torch

from optimlab.core.ops import FOREACH, LOOP
from optimlab.fused.tape import NotRecordable, Tape


def tensors(seed, n=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(17 + i, generator=g, dtype=dtype) for i in range(n)]
    if seed == 0:
        xs[0][0] = 0.0  # a zero, for sign and sign_select (never in a divisor)
    return xs


OUT_OF_PLACE = [
    ("mul", lambda ys: (ys,), lambda x, y: x * y),
    ("mul", lambda ys: (0.3,), lambda x, y: x * 0.3),
    ("add_scalar", lambda ys: (0.1,), lambda x, y: x + 0.1),
    ("abs", lambda ys: (), lambda x, y: x.abs()),
    ("sign", lambda ys: (), lambda x, y: x.sign()),
    ("maximum", lambda ys: (ys,), lambda x, y: torch.maximum(x, y)),
    ("norm", lambda ys: (), lambda x, y: torch.linalg.vector_norm(x)),
    (
        "sign_select",
        lambda ys: (1.2, 0.5, 1.0),
        lambda x, y: torch.tensor(
            [1.2 if v > 0 else 0.5 if v < 0 else 1.0 for v in x.tolist()], dtype=x.dtype
        ),
    ),
]
IN_PLACE = [
    ("clamp_", lambda ys: (-0.5, 0.5), lambda x, y: x.clamp(-0.5, 0.5)),
    ("sign_", lambda ys: (), lambda x, y: x.sign()),
    ("reciprocal_", lambda ys: (), lambda x, y: 1 / x),
    ("rsqrt_", lambda ys: (), lambda x, y: torch.rsqrt(x.abs())),
    ("mul_", lambda ys: (ys,), lambda x, y: x * y),
    ("div_", lambda ys: (ys,), lambda x, y: x / y),
]


@pytest.mark.parametrize("name,args,expected", OUT_OF_PLACE, ids=[c[0] for c in OUT_OF_PLACE])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_out_of_place_operations(name, args, expected, dtype):
    xs, ys = tensors(0, dtype=dtype), tensors(1, dtype=dtype)
    before = [x.clone() for x in xs]
    loop, foreach = getattr(LOOP, name)(xs, *args(ys)), getattr(FOREACH, name)(xs, *args(ys))
    for x, y, a, b, x0 in zip(xs, ys, loop, foreach, before):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, expected(x, y).to(a.dtype), rtol=0, atol=0)
        assert torch.equal(x, x0)  # inputs untouched


@pytest.mark.parametrize("name,args,expected", IN_PLACE, ids=[c[0] for c in IN_PLACE])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_in_place_operations(name, args, expected, dtype):
    ys = tensors(1, dtype=dtype)
    a, b, x0 = tensors(0, dtype=dtype), tensors(0, dtype=dtype), tensors(0, dtype=dtype)
    if name == "rsqrt_":  # positive inputs: NaN compares unequal
        for x in (*a, *b, *x0):
            x.abs_()
    getattr(LOOP, name)(a, *args(ys))
    getattr(FOREACH, name)(b, *args(ys))
    for u, v, x, y in zip(a, b, x0, ys):
        assert torch.equal(u, v)
        torch.testing.assert_close(u, expected(x, y), rtol=0, atol=0)


def test_tape_refuses_what_it_cannot_record():
    tape = Tape(("param", "grad"))
    with pytest.raises(NotRecordable, match="norm"):
        tape.ops.norm([tape["grad"]])
    with pytest.raises(NotRecordable, match="max_abs is a reduction"):
        tape.ops.max_abs([tape["grad"]])

"""Mixed precision: an update computed in a wider type than the parameter is kept in.

With ``state_dtype=torch.float32`` a bfloat16 parameter keeps float32 state: each step computes
the rule in float32 on the parameter and gradient widened exactly, then writes the parameter
back rounded to bfloat16, to nearest (ties to even, as ``Tensor.copy_`` rounds), or
stochastically (``stochastic_rounding=True``): up with probability equal to the distance to the
value below, measured in units of the last place, so that the rounding is unbiased and small
updates accumulate in expectation instead of vanishing (Gupta et al., "Deep Learning with
Limited Numerical Precision", ICML 2015).

The random bits are a pure function of a per-parameter seed kept in the state
(``rounding_seed``), the step count and the element's position (:func:`hash32`): the same on
every path (the plain one here, the Triton kernel, which computes the same integers) and after
a resume. :func:`stochastic_round_bf16` is the reference each path follows.
"""

from __future__ import annotations

import torch
from torch import Tensor

MASK32 = 0xFFFFFFFF
#: the multipliers of :func:`hash32`, both below 2**31 so that a product of one with a 32-bit
#: number fits in a signed 64-bit integer (no overflow in torch's int64 arithmetic)
HASH_MULTIPLIERS = (0x7FEB352D, 0x2C1B3C6D)


def hash32(x: int) -> int:
    """A 32-bit integer hash (xorshift-multiply rounds, after Wellons' "lowbias32")."""
    x &= MASK32
    x ^= x >> 16
    x = (x * HASH_MULTIPLIERS[0]) & MASK32
    x ^= x >> 15
    x = (x * HASH_MULTIPLIERS[1]) & MASK32
    x ^= x >> 16
    return x


def _hash32_tensor(x: Tensor) -> Tensor:
    """:func:`hash32` of every element of an int64 tensor holding 32-bit values."""
    x = x ^ (x >> 16)
    x = (x * HASH_MULTIPLIERS[0]) & MASK32
    x = x ^ (x >> 15)
    x = (x * HASH_MULTIPLIERS[1]) & MASK32
    return x ^ (x >> 16)


def rounding_key(seed: int, step: int) -> int:
    """The key of a tensor's random bits at a step: ``hash32(seed ^ hash32(step))``."""
    return hash32(seed ^ hash32(step))


def rounding_bits(numel: int, seed: int, step: int, device: torch.device | str = "cpu") -> Tensor:
    """The 16 random bits (int64 in ``[0, 65536)``) of each element of a tensor at a step:
    ``hash32(index ^ rounding_key(seed, step)) & 0xFFFF``."""
    index = torch.arange(numel, dtype=torch.int64, device=device)
    return _hash32_tensor(index ^ rounding_key(seed, step)) & 0xFFFF


def stochastic_round_bf16(x: Tensor, seed: int, step: int) -> Tensor:
    """``x`` (float32) rounded stochastically to bfloat16.

    Adds 16 random bits to the low half of each float32's bit pattern and keeps the high
    half: the magnitude rounds up exactly when the bits exceed the low half's complement, with
    probability (low half) / 2**16. NaN and infinities pass unchanged.
    """
    if x.dtype != torch.float32:
        raise TypeError(f"stochastic rounding to bfloat16 takes float32, got {x.dtype}")
    flat = x.reshape(-1)
    bits = flat.view(torch.int32).to(torch.int64) & MASK32
    noise = rounding_bits(flat.numel(), seed, step, flat.device)
    rounded = ((bits + noise) & 0xFFFF0000).to(torch.int64)
    # back to an int32 bit pattern (values above 2**31 are the negative numbers' patterns)
    rounded = torch.where(rounded >= 2**31, rounded - 2**32, rounded).to(torch.int32)
    result = rounded.view(torch.float32)
    result = torch.where(torch.isfinite(flat), result, flat)
    return result.to(torch.bfloat16).reshape(x.shape)

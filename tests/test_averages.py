"""Exponentially weighted averages against the notes' numbers and their closed form."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import optimlab


def test_the_notes_table():
    # Seed 000, section 3.1: beta = 0.8 over 20, 23, 17 gives 4, 7.8, 9.64.
    # abs=1e-12: three steps of three roundings of numbers below 25 are within 10 ulp of 25
    # (4e-14); the table's own values are exact to the digits shown.
    assert optimlab.ewa([20, 23, 17], beta=0.8) == pytest.approx([4.0, 7.8, 9.64], abs=1e-12)
    avg = optimlab.EWA(beta=0.8)
    assert [avg.update(x) for x in (20, 23, 17)] == pytest.approx([4.0, 7.8, 9.64], abs=1e-12)
    assert avg.count == 3 and avg.value == pytest.approx(9.64)


def test_bias_correction_divides_by_one_minus_beta_to_the_t():
    corrected = optimlab.ewa([20, 23, 17], beta=0.8, bias_correction=True)
    # rel=1e-12: the same few roundings as above, and one division on each side
    assert corrected == pytest.approx([4 / 0.2, 7.8 / 0.36, 9.64 / 0.488], rel=1e-12)
    # A constant series is reproduced exactly from the first value on: no pull towards 0.
    assert optimlab.ewa([5.0] * 10, beta=0.9, bias_correction=True) == pytest.approx([5.0] * 10)


@pytest.mark.parametrize("beta", [0.5, 0.8, 0.9, 0.98])
def test_closed_form_weights(beta):
    # v_n = sum_i beta**(n-i) * (1 - beta) * t_i   (seed 000, eq. 7)
    rng = np.random.default_rng(1)
    series = rng.normal(20, 5, size=60)
    n = np.arange(1, 61)
    expected = [
        sum(beta ** (k - i) * (1 - beta) * series[i - 1] for i in range(1, k + 1)) for k in n
    ]
    # rtol=1e-12: the recursion rounds 3 times a step and carries each error times beta, so
    # at most 1.5 ulp / (1 - beta) = 75 ulp for beta = 0.98; the closed form sums 60 positive
    # terms (no cancellation: the series is about 20 +- 5) of 3 roundings, at most 90 ulp more.
    # 165 ulp = 4e-14 < 1e-12.
    np.testing.assert_allclose(optimlab.ewa(series, beta), expected, rtol=1e-12)


@pytest.mark.parametrize("beta, window", [(0.5, 2), (0.9, 10), (0.98, 50)])
def test_effective_window(beta, window):
    assert optimlab.EWA(beta).window == pytest.approx(window)


def test_tensors_stream_and_series():
    avg = optimlab.EWA(beta=0.5, bias_correction=True)
    avg.update(torch.tensor([2.0, 4.0]))
    out = avg.update(torch.tensor([4.0, 8.0]))
    # v2 = 0.25 * [2, 4] + 0.5 * [4, 8] = [2.5, 5]; corrected by 1 - 0.25
    torch.testing.assert_close(out, torch.tensor([2.5, 5.0]) / 0.75)
    series = torch.arange(12.0).reshape(6, 2)
    result = optimlab.ewa(series, beta=0.5)
    assert isinstance(result, torch.Tensor) and result.shape == (6, 2)
    # rtol=1e-6: the tensor series is float32, the NumPy one float64: 1.5 float32 ulp a step
    # carried times beta = 0.5, at most 3 ulp = 3.6e-7 (positive terms: no cancellation)
    np.testing.assert_allclose(
        result[:, 1].numpy(), optimlab.ewa(series[:, 1].numpy(), 0.5), rtol=1e-6
    )


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
@pytest.mark.parametrize("bias_correction", [False, True])
def test_an_integer_tensor_series_averages_in_floating_point(dtype, bias_correction):
    """The notes' table as an integer tensor: averages of integers are not integers (they were
    truncated into the input's dtype: 4, 7, 9). Torch's default dtype, as ``beta * x`` gives
    and EWA's updates; the notes' values (seed 000, section 3.1; eq. 10 corrected)."""
    result = optimlab.ewa(torch.tensor([20, 23, 17], dtype=dtype), 0.8, bias_correction)
    assert result.dtype == torch.get_default_dtype()
    expected = np.array([4.0, 7.8, 9.64]) / (np.array([0.2, 0.36, 0.488]) if bias_correction else 1)
    # rtol=1e-6: float32: beta and 1 - beta rounded to it (1.5e-8 each), three roundings a
    # step of 6e-8 each (positive terms: no cancellation) over three steps, one division:
    # below 7e-7 relative
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-6)


def test_state_dict_round_trip():
    avg = optimlab.EWA(beta=0.9, bias_correction=True)
    for x in (1.0, 2.0, 3.0):
        avg.update(x)
    buffer = io.BytesIO()
    torch.save(avg.state_dict(), buffer)
    buffer.seek(0)
    resumed = optimlab.EWA(beta=0.5)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.update(4.0) == avg.update(4.0)
    assert "beta=0.9" in repr(resumed)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: optimlab.EWA(beta=1.0),
            ValueError,
            r"Invalid beta value: 1\.0; expected a number in \[0, 1\)",
        ),
        (lambda: optimlab.EWA(beta=-0.2), ValueError, r"Invalid beta value: -0\.2"),
        (lambda: optimlab.EWA(beta="0.9"), TypeError, r"Invalid beta value: '0\.9'"),
        (
            lambda: optimlab.EWA(beta=0.9, bias_correction="yes"),
            TypeError,
            r"Invalid bias_correction value: 'yes'",
        ),
        (
            lambda: optimlab.EWA(0.9).update("hot"),
            TypeError,
            r"Invalid x: 'hot'; expected a number or a Tensor",
        ),
        (
            lambda: optimlab.EWA(0.9).update(float("nan")),
            ValueError,
            r"Invalid x: nan; expected a finite number",
        ),
        (
            lambda: optimlab.ewa([], 0.9),
            ValueError,
            r"Invalid series: expected a non-empty sequence",
        ),
        (
            lambda: optimlab.ewa([1.0, float("inf")], 0.9),
            ValueError,
            r"Invalid series: it holds NaN or Inf",
        ),
        (lambda: optimlab.ewa([1.0], 1.5), ValueError, r"Invalid beta value: 1\.5"),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_csv_with_a_byte_order_mark_has_its_first_column(tmp_path):
    """Excel's "CSV UTF-8" begins with a byte-order mark: the first column is `temp`, not
    `\\ufefftemp` (the error said: no column 'temp'; columns are: temp, day)."""
    from optimlab.lab.averages import read_column

    path = tmp_path / "series.csv"
    path.write_text("temp,day\n20,1\n23,2\n17,3\n", encoding="utf-8-sig")
    assert read_column(path, "temp") == ("temp", [20.0, 23.0, 17.0])

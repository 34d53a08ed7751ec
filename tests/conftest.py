from __future__ import annotations

import os

# Triton's kernels run on CPU tensors in its interpreter (tests/test_triton.py); the switch is
# read when triton.language is first imported, which torch.compile's tests may do first.
os.environ["TRITON_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: a second intra-op thread per worker oversubscribes
    # the cores, and small matrix products then stall for tens of milliseconds. Tests that
    # need threads set them themselves.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    """A slice of scikit-learn's bundled handwritten digits (no network), standardized."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    return torch.from_numpy(X[:256].astype(np.float64)), torch.from_numpy(y[:256])


def make_mlp(dtype=torch.float64, seed=0, hidden=16):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 10)
    )
    return model.to(dtype)

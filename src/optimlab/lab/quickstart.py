"""``make run`` until the lab exists: every optimizer of the notes trains the same small network on
scikit-learn's bundled handwritten digits, and a table of final losses and accuracies is printed.

Run it with ``python -m optimlab.lab.quickstart [--epochs N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import optimlab
from optimlab.data import MiniBatches

# The notes' optimizers, each with a learning rate that suits it on this problem.
CONTENDERS: list[tuple[str, type, dict]] = [
    ("SGD (mini-batch GD)", optimlab.SGD, dict(lr=0.1)),
    ("Momentum, averaged (ema)", optimlab.Momentum, dict(lr=0.3, beta=0.9)),
    ("Momentum, heavy ball", optimlab.Momentum, dict(lr=0.03, beta=0.9, form="heavy_ball")),
    (
        "Momentum, Nesterov",
        optimlab.Momentum,
        dict(lr=0.03, beta=0.9, form="heavy_ball", nesterov=True),
    ),
    ("RMSprop", optimlab.RMSprop, dict(lr=1e-3)),
    (
        "RMSprop, eps inside sqrt",
        optimlab.RMSprop,
        dict(lr=1e-3, alpha=0.9, eps=1e-7, eps_inside_sqrt=True),
    ),
    ("Adam", optimlab.Adam, dict(lr=3e-3)),
    (
        "Adam, no bias correction",
        optimlab.Adam,
        dict(lr=3e-3, bias_correction=False, eps_inside_sqrt=True),
    ),
    ("AdamW", optimlab.AdamW, dict(lr=3e-3, weight_decay=1e-2)),
]


def load_digits_split(seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=seed, stratify=y
    )
    mean, std = X_train.mean(0), X_train.std(0)
    std[std == 0] = 1.0  # pixels that are blank in every training image
    as_x = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.int64)  # noqa: E731
    return as_x(X_train), as_y(y_train), as_x(X_test), as_y(y_test)


def train_one(cls, kwargs, data, epochs: int, seed: int) -> dict[str, float]:
    X_train, y_train, X_test, y_test = data
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = cls(model.parameters(), **kwargs)
    plan = MiniBatches(X_train, y_train, batch_size=32, shuffle=True, seed=seed)
    loss_fn = torch.nn.functional.cross_entropy
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in plan:
            optimizer.zero_grad()
            loss_fn(model(xb), yb).backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        train_loss = loss_fn(model(X_train), y_train).item()
        test_loss = loss_fn(model(X_test), y_test).item()
        accuracy = (model(X_test).argmax(1) == y_test).float().mean().item()
    return dict(train_loss=train_loss, test_loss=test_loss, accuracy=accuracy, seconds=seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training data")
    parser.add_argument("--seed", type=int, default=0, help="seed for data split, init, shuffles")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    torch.set_num_threads(1)
    data = load_digits_split(args.seed)
    print(
        f"Digits: {len(data[0])} training and {len(data[2])} test images of 8x8 pixels, "
        f"MLP 64-64-10, mini-batches of 32, {args.epochs} epochs, seed {args.seed}\n"
    )
    header = (
        f"{'optimizer':<28} {'arguments':<52} {'train loss':>10} {'test loss':>10} "
        f"{'test acc':>9} {'seconds':>8}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for name, cls, kwargs in CONTENDERS:
        result = train_one(cls, kwargs, data, args.epochs, args.seed)
        rows.append((name, result))
        arguments = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        print(
            f"{name:<28} {arguments:<52} {result['train_loss']:>10.4f} "
            f"{result['test_loss']:>10.4f} {result['accuracy']:>9.3f} {result['seconds']:>8.2f}",
            flush=True,
        )
    best = min(rows, key=lambda r: r[1]["test_loss"])
    print(
        f"\nLowest test loss: {best[0]} ({best[1]['test_loss']:.4f}); "
        f"median test accuracy {np.median([r[1]['accuracy'] for r in rows]):.3f}"
    )


if __name__ == "__main__":
    main()

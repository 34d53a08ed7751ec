"""A training run used by the resume tests, started as a separate process.

    python resume_worker.py --steps N --checkpoint-dir D --out params.pt [--resume]
                            [--kill-during-save K]

Shuffling, dropout, gradient accumulation with an uneven last micro-batch, a warmup-then-cosine
schedule and Adam are all on. With --kill-during-save K the process sends itself SIGKILL halfway
through writing its K-th checkpoint, as a crash at the worst moment would.
"""

from __future__ import annotations

import argparse
import os
import signal

import torch

import optimlab
from optimlab.data import MiniBatches
from optimlab.schedules import cosine_decay, join, linear_warmup
from optimlab.train import checkpoint as checkpoint_module
from optimlab.train import fit


def build():
    generator = torch.Generator().manual_seed(1234)
    X = torch.randn(100, 6, generator=generator)
    y = (X[:, 0] + X[:, 1] > 0).long()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 2)
    )
    optimizer = optimlab.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    plan = MiniBatches(X, y, batch_size=8, shuffle=True, seed=7)  # 13 batches: last one of 4
    schedule = join([linear_warmup(1e-2, 5), cosine_decay(1e-2, decay_steps=40)], [5])
    return model, optimizer, plan, schedule, (X, y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-during-save", type=int, default=0)
    args = parser.parse_args()

    if args.kill_during_save:
        saves = [0]
        real_save = checkpoint_module.torch.save

        def dying_save(obj, f, *a, **kw):
            saves[0] += 1
            if saves[0] == args.kill_during_save:
                real_save(obj, f, *a, **kw)
                f.flush()
                f.truncate(f.tell() // 2)  # half of the file is on disk...
                os.kill(os.getpid(), signal.SIGKILL)  # ...when the process dies
            return real_save(obj, f, *a, **kw)

        checkpoint_module.torch.save = dying_save

    model, optimizer, plan, schedule, data = build()
    fit(
        model,
        optimizer,
        plan,
        steps=args.steps,
        schedule=schedule,
        accumulation=3,
        eval_data=data,
        eval_every=4,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=3,
        resume=args.resume,
        progress=False,
    )
    torch.save([p.detach() for p in model.parameters()], args.out)


if __name__ == "__main__":
    main()

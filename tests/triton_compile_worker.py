"""Compile Triton kernel sources ahead of time for GPUs, on a machine without one.

Run by ``tests/test_triton_compile.py`` in a process of its own: Triton compiles only where
its interpreter never ran (the interpreter patches ``triton.language`` for good), and the
tests' process runs the interpreter. Triton's NVIDIA backend lowers a kernel to PTX and runs
the ``ptxas`` it ships with to make the machine code; neither needs a GPU or a driver.

stdin: JSON ``{"targets": [arch, ...], "options": {...}, "kernels": [{"name", "source",
"signature", "constexprs"[, "targets"]}, ...]}`` (``arch`` as ``90`` for an H100; a kernel's
own ``targets`` replace the job's; a constexpr given as a string is the Triton type of that
name). stdout: JSON, for each
kernel a list of ``{"arch", "ptx", "cubin_bytes", "resources"}``, one per target.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

if os.environ.get("TRITON_INTERPRET") == "1":
    raise SystemExit("run without TRITON_INTERPRET=1: the interpreter cannot compile")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from optimlab.fused.triton_kernels import _define  # noqa: E402

CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"


def resources(cubin: bytes) -> dict[str, int]:
    """What one thread of the kernel uses, as ``cuobjdump -res-usage`` reads the machine code:
    registers (``REG``), and local memory (``LOCAL``, ``STACK``: spilled registers)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "kernel.cubin"
        path.write_bytes(cubin)
        out = subprocess.run(
            [str(CUOBJDUMP), "-res-usage", str(path)], capture_output=True, text=True, check=True
        ).stdout
    return {k: int(v) for k, v in re.findall(r"\b(REG|STACK|LOCAL):(\d+)", out)}


def main() -> None:
    job = json.load(sys.stdin)
    results = []
    for spec in job["kernels"]:
        fn = _define(spec["source"], spec["name"])
        constexprs = {  # Triton's types by name ("uint32")
            key: getattr(tl, value) if isinstance(value, str) else value
            for key, value in spec["constexprs"].items()
        }
        compiled = []
        for arch in spec.get("targets", job["targets"]):
            source = ASTSource(fn, spec["signature"], constexprs=constexprs)
            kernel = triton.compile(
                source, target=GPUTarget("cuda", arch, 32), options=job["options"]
            )
            cubin = kernel.asm["cubin"]
            compiled.append(
                {
                    "arch": arch,
                    "ptx": kernel.asm["ptx"],
                    "cubin_bytes": len(cubin),
                    "resources": resources(cubin),
                }
            )
        results.append(compiled)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()

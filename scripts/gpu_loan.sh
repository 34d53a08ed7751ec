#!/usr/bin/env bash
# Everything a short loan of a GPU machine is for, in one command of under 10 minutes, run from
# the repository's root with the machine's own python3 (PyTorch and Triton there):
#
#     OUT=/some/folder bash scripts/gpu_loan.sh
#
# 1. scripts/gpu_check.py: parity, synchronisations, CUDA graphs, fit, speed of every fusable
#    optimizer, the compiled kernels' PTX (under 5 minutes; its report after each part).
# 2. optimlab bench --device cuda for Adam, AdamW and SGD with momentum: 100M parameters in 200
#    and 2,000 tensors against torch's fused and foreach paths and the bandwidth bound.
# Seven files land in $OUT (default ./gpu-results; a loan brings back at most 8): versions.txt,
# run.log, gpu_check.md/.json, BENCHMARKS.md, results.json, optimizer_steps.png. The
# repository's BENCHMARKS.md then takes the card's figures from them.
set -u
out=${OUT:-gpu-results}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/versions.txt" 2>&1
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)' \
    >> "$out/versions.txt" 2>&1
timeout 360 python3 scripts/gpu_check.py --out "$out" > "$out/run.log" 2>&1
echo "gpu_check: exit $?" | tee -a "$out/versions.txt"
timeout 180 python3 -m optimlab bench --device cuda --variants adam,adamw,sgd-momentum \
    --rounds 5 --no-plans --no-train --out "$out/BENCHMARKS.md" --json "$out/results.json" \
    --plot "$out/optimizer_steps.png" >> "$out/run.log" 2>&1
echo "bench: exit $?" | tee -a "$out/versions.txt"
cat "$out/versions.txt"
tail -n 60 "$out/run.log"

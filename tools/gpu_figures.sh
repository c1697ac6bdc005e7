#!/usr/bin/env bash
# The GPU figures for the README's throughput tables, in one short run on a GPU machine
# (issue 19): the machine, face models' training steps with the GPU defaults (bf16 autocast,
# channels_last, torch.compile) at 64 and 128 px, then a few hundred steps of IntroVAC at 128 px,
# batch 64. Each prints images/s, ms/step and peak allocated memory. Every (model, size) compiles
# afresh (a minute or so), so by default only the plain VAE and the two adversarial models run:
# about 10 minutes in all; MODELS="..." names others.
#
#   tools/gpu_figures.sh [OUT]                          # on the GPU machine, from the repository root
#   STEPS=2 WARMUP=1 SIZES=32 LONG_SIZE=32 LONG_STEPS=2 tools/gpu_figures.sh /tmp/x   # a dry run of the wiring on a CPU
#
# It installs nothing: the package runs from this checkout (PYTHONPATH) on the machine's own
# torch, since such machines often cannot reach a package index. The tables land in OUT
# (default: gpu-figures/), ready to paste.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-figures}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
{
  echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD 2>/dev/null || echo 'no git')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$py" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "available:", torch.cuda.is_available())'
} | tee "$out/machine.txt"
"$py" -m latentlab bench --models ${MODELS:-vae introvac ifcvae_gan} --sizes ${SIZES:-64 128} --steps "${STEPS:-20}" --warmup "${WARMUP:-5}" | tee "$out/bench.md"
"$py" -m latentlab bench --models introvac --sizes "${LONG_SIZE:-128}" --batch-size 64 \
  --steps "${LONG_STEPS:-300}" --warmup "${WARMUP:-5}" | tee "$out/introvac-long.md"

#!/usr/bin/env bash
# The GPU benchmark, prepared to run in one go on a lent GPU. Installs nothing: needs the project's requirements and
# a CUDA build of torch (PYTHON=/path/to/python; default .venv/bin/python, which bin/setup builds with CPU torch here).
#
#     bash bench/gpu.sh            # writes bench/results/*_gpu.json and prints the tables with the card's name
#
# 1. passage encoding, passages/s: sentence-transformers fp32 / bf16 vs dpr_rag (bf16 autocast), 20,000 passages;
# 2. DPR training, questions/s and peak memory: dpr_rag vs sentence-transformers MNRL, batch 128 + 1 hard negative.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DPR_RAG_CACHE=${DPR_RAG_CACHE:-/tmp/dpr_rag_cache}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to torch'; print(torch.cuda.get_device_name(0))"
mkdir -p bench/results
"$PY" bench/encode_speed.py --passages 10365 --batch-size 256 --skip-int8 2>&1 | tee bench/results/encode_speed_gpu.txt
"$PY" bench/train_speed.py --device cuda --batch-size 128 --steps 20 --warmup 3 \
    --out bench/results/train_speed_gpu.json 2>&1 | tee bench/results/train_speed_gpu.txt

#!/usr/bin/env bash
# One short GPU check (< 10 minutes on one H100/H200-class GPU), for a session that is lent a device:
#   1. the test suite with CUDA as torch's default device (HF_LONGCTX_TEST_DEVICE=cuda, read by tests/conftest.py),
# and, in scripts/gpu_check.py:
#   2. parity of sdpa (fp32, bf16) and flex_attention against eager on CUDA, every encoding,
#   3. bf16 training throughput and MFU at d_model 1024 (12+12 layers, 16 heads, d_ff 4096, vocab 32000),
#   4. one encoder pass at 64k and 128k tokens (batch 1, bf16, no grad, sdpa): seconds and peak CUDA memory.
# Each step has its own timeout and records failures instead of stopping; everything lands in $OUT (default
# runs/gpu_check): gpu_check.log, pytest_cuda.txt and gpu_check.json.
#     bash scripts/gpu_check.sh            # on the device machine, from the repository root
set -uo pipefail
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec > >(tee "$OUT/gpu_check.log") 2>&1
START=$(date +%s)
echo "== environment"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), 'transformers', transformers.__version__)"

echo "== 1. test suite on CUDA (default device cuda; 240 s cap)"
HF_LONGCTX_TEST_DEVICE=cuda timeout 240 "$PY" -m pytest -q -x --no-header tests \
    --ignore=tests/test_distributed.py -k "not smoke_benchmark" > "$OUT/pytest_cuda.txt" 2>&1
echo "pytest exit code $? (tail below; full output in pytest_cuda.txt)"; tail -5 "$OUT/pytest_cuda.txt"

echo "== 2-4. parity, bf16 training throughput, 64k/128k encoder passes"
timeout 300 "$PY" scripts/gpu_check.py "$OUT/gpu_check.json"
echo "python part exit code $?"
echo "== done in $(( $(date +%s) - START )) s; results in $OUT"

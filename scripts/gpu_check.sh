#!/usr/bin/env bash
# One short GPU check (< 10 minutes on one H100/H200-class GPU), for a session that is lent a device:
#   1. the test suite with CUDA as torch's default device (a pytest plugin written below; the suite itself is unchanged),
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
PLUGIN_DIR=$(mktemp -d)
cat > "$PLUGIN_DIR/cuda_default_device.py" <<'PYEOF'
import torch
def pytest_configure(config):
    torch.set_default_device("cuda")
PYEOF
PYTHONPATH="$PLUGIN_DIR:${PYTHONPATH:-}" timeout 240 "$PY" -m pytest -q -x --no-header -p cuda_default_device tests \
    --ignore=tests/test_distributed.py -k "not smoke_benchmark" > "$OUT/pytest_cuda.txt" 2>&1
echo "pytest exit code $? (tail below; full output in pytest_cuda.txt)"; tail -5 "$OUT/pytest_cuda.txt"

echo "== 2-4. parity, bf16 training throughput, 64k/128k encoder passes"
timeout 300 "$PY" - "$OUT/gpu_check.json" <<'PYEOF'
import json, sys, time, traceback
import torch
from hf_longctx import LongCtxConfig, LongCtxForConditionalGeneration
from hf_longctx.positions import encoding_names

out, results = sys.argv[1], {"device": torch.cuda.get_device_name(), "parity": {}, "train_bf16": {}, "encoder": {}}
ENCODINGS = encoding_names(encoder_allowed=True)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}  # dense bf16 tensor-core FLOP/s
peak = next((v for k, v in PEAK_BF16.items() if k in results["device"]), None)
dev = "cuda"

def build(pe, impl, max_len, **sizes):
    cfg = dict(vocab_size=8000, d_model=256, num_heads=4, d_ff=1024, encoder_layers=4, decoder_layers=4, dropout=0.0)
    cfg.update(sizes)
    torch.manual_seed(0)
    config = LongCtxConfig(position_embedding_type=pe, max_position_embeddings=max_len, **cfg)
    model = LongCtxForConditionalGeneration(config).to(dev)
    model.set_attn_implementation(impl)
    return model

def record(section, key, fn):
    try:
        results[section][key] = fn()
    except Exception as error:  # keep going: the point is a full picture in one short run
        results[section][key] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
        traceback.print_exc(limit=2)
    print(section, key, results[section][key], flush=True)

# 2. parity against eager (fp32 logits, padded batch of 2 at 300 source tokens), and bf16 sdpa (flash) vs eager fp32
def parity(pe):
    ids = torch.randint(2, 8000, (2, 300), device=dev)
    mask = torch.ones_like(ids); mask[1, 250:] = 0
    labels = torch.randint(2, 8000, (2, 40), device=dev)
    eager = build(pe, "eager", 512).eval()
    with torch.no_grad():
        ref = eager(input_ids=ids, attention_mask=mask, labels=labels).logits
        row = {}
        for impl in ("sdpa", "flex_attention"):
            try:
                model = build(pe, impl, 512).eval()
                model.load_state_dict(eager.state_dict())
                row[impl] = (model(input_ids=ids, attention_mask=mask, labels=labels).logits - ref).abs().max().item()
                if impl == "sdpa":
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        low = model(input_ids=ids, attention_mask=mask, labels=labels).logits.float()
                    row["sdpa_bf16"] = (low - ref).abs().max().item()
            except Exception as error:
                row[impl] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return row

for pe in ENCODINGS:
    record("parity", pe, lambda: parity(pe))

# 3. bf16 autocast training at d_model 1024: tokens/s and MFU (6 x parameters x tokens / peak)
def train_bf16(pe, impl, steps=10, batch=16, src=1024, tgt=256):
    model = build(pe, impl, src, d_model=1024, num_heads=16, d_ff=4096, encoder_layers=12, decoder_layers=12,
                  vocab_size=32000).train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(2, 32000, (batch, src), device=dev)
    labels = torch.randint(2, 32000, (batch, tgt), device=dev)
    for i in range(steps + 3):
        if i == 3:
            torch.cuda.synchronize(); start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    tps = steps * batch * (src + tgt) / (time.perf_counter() - start)
    del model, opt; torch.cuda.empty_cache()
    return {"parameters": params, "tokens_per_s": tps, "mfu": 6 * params * tps / peak if peak else None}

for pe, impl in [("rope", "sdpa"), ("alibi", "sdpa"), ("relative", "sdpa"), ("alibi", "flex_attention"),
                 ("relative", "flex_attention")]:
    record("train_bf16", f"{pe}/{impl}", lambda: train_bf16(pe, impl))

# 4. encoder pass at 64k and 128k tokens, batch 1, bf16, no grad
def encoder_pass(pe, impl, length):
    model = build(pe, impl, length).eval()
    encoder = model.get_encoder()
    ids = torch.randint(2, 8000, (1, length), device=dev)
    torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(); torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        hidden = encoder(input_ids=ids).last_hidden_state
    torch.cuda.synchronize()
    row = {"seconds": time.perf_counter() - start, "peak_gb": torch.cuda.max_memory_allocated() / 2**30,
           "finite": bool(torch.isfinite(hidden).all())}
    del model, encoder, hidden; torch.cuda.empty_cache()
    return row

# sdpa only: from chunked_attention_min_length on, the bias encodings take the blocked long-input path (SDPA per
# block) whatever the attention implementation, so a flex_attention row here would measure the same thing.
for length in (65536, 131072):
    for pe in ENCODINGS:
        record("encoder", f"{pe}/sdpa/{length}", lambda: encoder_pass(pe, "sdpa", length))

with open(out, "w") as f:
    json.dump(results, f, indent=1)
print("wrote", out)
PYEOF
echo "python part exit code $?"
echo "== done in $(( $(date +%s) - START )) s; results in $OUT"

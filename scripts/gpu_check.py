#!/usr/bin/env python
"""The Python part of `scripts/gpu_check.sh` (run it through that script): on one CUDA GPU, parity of sdpa (fp32,
bf16) and flex_attention against eager for every encoding, bf16 training throughput and MFU at d_model 1024, and one
encoder pass at 64k and 128k tokens. Writes the JSON named by its one argument.

    python scripts/gpu_check.py runs/gpu_check/gpu_check.json
"""

import json
import sys
import time
import traceback

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


def record(section, key, fn, *args):
    try:
        results[section][key] = fn(*args)
    except Exception as error:  # keep going: the point is a full picture in one short run
        results[section][key] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
        traceback.print_exc(limit=2)
    print(section, key, results[section][key], flush=True)


# 2. parity against eager (fp32 logits, padded batch of 2 at 300 source tokens), and bf16 sdpa (flash) vs eager fp32
def parity(pe):
    ids = torch.randint(2, 8000, (2, 300), device=dev)
    mask = torch.ones_like(ids)
    mask[1, 250:] = 0
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
    record("parity", pe, parity, pe)


# 3. bf16 autocast training at d_model 1024: tokens/s and MFU (6 x parameters x tokens / peak)
def train_bf16(pe, impl, steps=10, batch=16, src=1024, tgt=256):
    model = build(
        pe, impl, src, d_model=1024, num_heads=16, d_ff=4096, encoder_layers=12, decoder_layers=12, vocab_size=32000
    ).train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(2, 32000, (batch, src), device=dev)
    labels = torch.randint(2, 32000, (batch, tgt), device=dev)
    for i in range(steps + 3):
        if i == 3:
            torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    tps = steps * batch * (src + tgt) / (time.perf_counter() - start)
    del model, opt
    torch.cuda.empty_cache()
    return {"parameters": params, "tokens_per_s": tps, "mfu": 6 * params * tps / peak if peak else None}


for pe, impl in [
    ("rope", "sdpa"),
    ("alibi", "sdpa"),
    ("relative", "sdpa"),
    ("alibi", "flex_attention"),
    ("relative", "flex_attention"),
]:
    record("train_bf16", f"{pe}/{impl}", train_bf16, pe, impl)


# 4. encoder pass at 64k and 128k tokens, batch 1, bf16, no grad
def encoder_pass(pe, impl, length):
    model = build(pe, impl, length).eval()
    encoder = model.get_encoder()
    ids = torch.randint(2, 8000, (1, length), device=dev)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        hidden = encoder(input_ids=ids).last_hidden_state
    torch.cuda.synchronize()
    row = {
        "seconds": time.perf_counter() - start,
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30,
        "finite": bool(torch.isfinite(hidden).all()),
    }
    del model, encoder, hidden
    torch.cuda.empty_cache()
    return row


# sdpa only: from chunked_attention_min_length on, the bias encodings take the blocked long-input path (SDPA per
# block) whatever the attention implementation, so a flex_attention row here would measure the same thing.
for length in (65536, 131072):
    for pe in ENCODINGS:
        record("encoder", f"{pe}/sdpa/{length}", encoder_pass, pe, "sdpa", length)

with open(out, "w") as f:
    json.dump(results, f, indent=1)
print("wrote", out)

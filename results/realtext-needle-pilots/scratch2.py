"""Benchmark B from scratch at benchmark A's size: `python results/realtext-needle-pilots/scratch2.py LO HI STEPS LR BATCH ENC
[LENGTHS...]` from the repository root (`INIT=<folder>`: continue from that model instead): a fresh
model (d_model 128, 2+2 layers, 4 heads, d_ff 512, A's tokenizer) trained only on needles in LO-HI-token training
passages; exact match on 50 held-out needles per length (5 depth bins). `OVERRIDES=<field=value,...>`: config
fields set on the fresh model (`--config_overrides` of scripts/train.py, e.g. `encoder_local_radius=16`)."""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from hf_longctx.bench.realtext import RealTextArguments, _train, corpus_documents, needle_exact_match
from hf_longctx.data.text import needle_haystack_dataset
from hf_longctx.training.trainer import ModelArguments, build_model

lo, hi, steps = (int(a) for a in sys.argv[1:4])
lr, batch, enc = float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
lengths_eval = [int(a) for a in sys.argv[7:]] or [hi]
args = RealTextArguments(
    encodings=[enc], references=[], needle_steps=steps, warmup_steps=100, batch_size=batch, learning_rate=lr,
    needle_learning_rate=lr,
)  # fmt: skip
tokenizer, train_docs, test_docs = corpus_documents(args)
lengths = np.random.default_rng(0).integers(lo, hi + 1, size=steps * batch).tolist()
train = needle_haystack_dataset(train_docs, tokenizer, lengths, seed=1).remove_columns(["code", "depth"])
model_args = ModelArguments(
    d_model=128, encoder_layers=2, decoder_layers=2, num_heads=4, d_ff=512, position_embedding_type=enc,
    cross_attention_logn_length="off", config_overrides=os.environ.get("OVERRIDES"),
)  # fmt: skip
from transformers import AutoModelForSeq2SeqLM
init = os.environ.get("INIT")  # continue from a trained needle model (a curriculum: short passages first)
model = AutoModelForSeq2SeqLM.from_pretrained(init) if init else build_model(model_args, tokenizer, max_length=hi + 1, trained_length=hi + 1)
tag = os.environ.get("OVERRIDES", "").replace("=", "").replace(",", "-")
out = Path(f"runs/needle-scratch2/scratch2-{enc}{'+' + tag if tag else ''}-{lo}-{hi}-{steps}-{lr}" + ("-cont" if init else ""))
t = time.time()
result = {"argv": sys.argv[1:], "training": _train(args, model, tokenizer, train, steps, lr, out)}
print(result, time.time() - t, flush=True)
model.eval()
for n in lengths_eval:
    held_out = needle_haystack_dataset(test_docs, tokenizer, [n] * 50, seed=5, stratify_depth=True)
    result[n] = needle_exact_match(model, held_out, tokenizer, 16384)
    model.config.cross_attention_logn_length = hi + 1
    result[f"{n}+logn"] = needle_exact_match(model, held_out, tokenizer, 16384)
    model.config.cross_attention_logn_length = None
    print(n, "logn", result[f"{n}+logn"]["exact_match"], result[f"{n}+logn"]["exact_match_by_depth"], flush=True)
    print(n, result[n], time.time() - t, flush=True)
    Path(str(out) + ".json").write_text(json.dumps(result, indent=1, default=str))

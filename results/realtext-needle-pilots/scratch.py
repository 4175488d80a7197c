"""A model trained only on needles in real passages, from scratch: `python scratch.py LO HI STEPS D_MODEL` (passages of
LO-HI tokens, batch 64, lr 2e-3, alibi, 2+2 layers); prints its training and its exact match on 50 held-out needles
at HI tokens. Run from the repository root."""

import sys
from pathlib import Path

import numpy as np

from hf_longctx.bench.realtext import RealTextArguments, _train, corpus_documents, needle_exact_match
from hf_longctx.data.text import needle_haystack_dataset
from hf_longctx.training.trainer import ModelArguments, build_model

lo, hi, steps, d = (int(a) for a in sys.argv[1:5])
args = RealTextArguments(
    encodings=["alibi"], references=[], needle_steps=steps, warmup_steps=50, batch_size=64, learning_rate=2e-3,
    needle_learning_rate=2e-3,
)  # fmt: skip
tokenizer, train_docs, test_docs = corpus_documents(args)
lengths = np.random.default_rng(0).integers(lo, hi + 1, size=steps * 64).tolist()
train = needle_haystack_dataset(train_docs, tokenizer, lengths, seed=1).remove_columns(["code", "depth"])
model_args = ModelArguments(
    d_model=d, encoder_layers=2, decoder_layers=2, num_heads=4, d_ff=4 * d, position_embedding_type="alibi",
    cross_attention_logn_length="off",
)  # fmt: skip
model = build_model(model_args, tokenizer, max_length=hi + 1, trained_length=hi + 1)
print(_train(args, model, tokenizer, train, steps, 2e-3, Path("/tmp/needle-scratch")))
held_out = needle_haystack_dataset(test_docs, tokenizer, [hi] * 50, seed=5, stratify_depth=True)
print(needle_exact_match(model.eval(), held_out, tokenizer, 16384))

"""Checkpoints in, checkpoints out: BART / T5 / Marian weights into hf_longctx (`convert`), and a trained model's
context grown to a longer length (`extend`). A tool, not model code: `save_pretrained` copies none of it."""

"""Training with `Seq2SeqTrainer`: the synthetic tasks (`trainer`: arguments, model building, checkpoints, launch
checks, evaluation per length) and the real-text lookup (`text`); `metrics/` holds the `evaluate` modules they load
by path (offline). A tool, not model code: `save_pretrained` copies none of it."""

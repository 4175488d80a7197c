"""What the models are trained and evaluated on: the synthetic tasks (`tasks`), the real-text corpus and its
lookup task (`text`), and the word-level tokenizer of the synthetic tasks (`tokenization`). A tool, not model code:
`save_pretrained` copies none of it."""

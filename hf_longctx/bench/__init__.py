"""Benchmarks: the length-extrapolation protocol (`extrapolation`), its tables and plots (`report`), where a result
was made (`environment`), and the trunk ablation (`ablation`). A tool, not model code: `save_pretrained` copies none
of it."""

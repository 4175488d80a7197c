#!/usr/bin/env python
"""Perplexity of the same next tokens after longer and longer real-text contexts (issue "Long context on real text",
benchmark A): every hf_longctx encoding and HF T5 / BART / Marian, trained at contexts up to 256 tokens of the King
James Bible's training books, scored on held-out books at 256 ... 8192 tokens of context.

    python scripts/bench_realtext.py                       # the full protocol (see hf_longctx/bench/realtext.py)
    python scripts/bench_realtext.py --quick --output_dir /tmp/realtext --work_dir /tmp/realtext-runs   # smoke run

`--quick` sets tiny sizes and budgets (flags given after it still win). Writes results.json, results.md and
perplexity_vs_length.png under --output_dir.
"""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import HfArgumentParser  # noqa: E402

from hf_longctx.bench.realtext import RealTextArguments, quick_argv, run_realtext  # noqa: E402
from hf_longctx.hub.model_card import invocation_command  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    command = invocation_command([sys.argv[0], *argv])
    if "--quick" in argv:
        argv = quick_argv(argv)
    (args,) = HfArgumentParser(RealTextArguments).parse_args_into_dataclasses(argv)
    return run_realtext(args, command=command)


if __name__ == "__main__":
    main()

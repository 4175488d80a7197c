"""Pilot 3 of benchmark B (README.md here): the full protocol's alibi model, 3000 needle steps at lr 2e-3.

Needs that model in runs/realtext/alibi and a copy of its results in the output folder (the run resumes them), e.g.
    mkdir -p /tmp/pilot3 && cp results/realtext/results.json /tmp/pilot3/
(as made: output /tmp/rt-b3, work_dir the full run's runs/realtext). Run from the repository root."""

from hf_longctx.bench.realtext import RealTextArguments, run_realtext

args = RealTextArguments(encodings=["alibi"], references=[], logn=False, yarn=False, needle_steps=3000,
                         needle_learning_rate=2e-3, needle_lengths=[256, 1024, 4096], needle_samples=50, resume=True,
                         output_dir="/tmp/pilot3", work_dir="runs/realtext")  # fmt: skip
run_realtext(args, command="pilot_b.py")

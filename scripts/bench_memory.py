"""One encoder pass over long inputs: peak memory and wall time, hf_longctx next to HF T5 in one run.

Each measurement runs in a fresh subprocess (peak RSS is per process), batch 1, fp32, no grad.
    python scripts/bench_memory.py --lengths 4096 16384 32768 --encodings relative alibi --threads 1
prints a markdown table and writes JSON (--output). `--t5-max-length` skips T5 above that length (it needs
O(L^2) memory: 13 GB at 16k tokens at this size).
"""

import json
import subprocess
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

SIZES = dict(d_model=256, num_heads=4, layers=4, d_ff=1024, vocab_size=8000)

def child(spec: dict) -> dict:
    """One encoder pass in this (fresh) process: wall time and peak RSS, before and after the pass."""
    import resource
    import time

    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    s = spec["sizes"]
    if spec["model"] == "t5":
        from transformers import T5Config, T5EncoderModel

        config = T5Config(vocab_size=s["vocab_size"], d_model=s["d_model"], d_kv=s["d_model"] // s["num_heads"],
                          d_ff=s["d_ff"], num_layers=s["layers"], num_heads=s["num_heads"], dropout_rate=0.0)
        encoder = T5EncoderModel(config).eval()
        encoder.set_attn_implementation("sdpa")
    else:
        from hf_longctx import LongCtxConfig, LongCtxModel

        config = LongCtxConfig(vocab_size=s["vocab_size"], d_model=s["d_model"], num_heads=s["num_heads"],
                               d_ff=s["d_ff"], encoder_layers=s["layers"], decoder_layers=1, dropout=0.0,
                               position_embedding_type=spec["model"], max_position_embeddings=spec["length"])
        encoder = LongCtxModel(config).eval().get_encoder()
    input_ids = torch.randint(2, s["vocab_size"], (1, spec["length"]))
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with torch.no_grad():
        out = encoder(input_ids=input_ids).last_hidden_state
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_mb": peak / 1024, "pass_mb": (peak - baseline) / 1024,
            "finite": bool(torch.isfinite(out).all())}  # fmt: skip


@dataclass
class Arguments:
    lengths: list[int] = field(default_factory=lambda: [4096, 16384, 32768])
    encodings: list[str] = field(default_factory=lambda: ["relative", "alibi"])
    t5_max_length: int = 16384
    threads: int = 1
    output: str = "runs/bench_memory.json"


def measure(model: str, length: int, threads: int) -> dict:
    spec = {"model": model, "length": length, "threads": threads, "sizes": SIZES}
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if done.returncode != 0:
        return {"model": model, "length": length, "error": done.stderr.strip().splitlines()[-1]}
    return {"model": model, "length": length, **json.loads(done.stdout.strip().splitlines()[-1])}


def main():
    (args,) = HfArgumentParser(Arguments).parse_args_into_dataclasses()
    rows = []
    for length in args.lengths:
        models = list(args.encodings) + (["t5"] if length <= args.t5_max_length else [])
        for model in models:
            row = measure(model, length, args.threads)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"Encoder pass, batch 1, fp32, {args.threads} thread(s), sizes {SIZES}\n")
    print("| model | tokens | peak RSS (MB) | pass alone (MB) | seconds |\n|---|---:|---:|---:|---:|")
    for row in rows:
        if "error" in row:
            print(f"| {row['model']} | {row['length']} | failed: {row['error']} | | |")
        else:
            print(f"| {row['model']} | {row['length']} | {row['peak_mb']:.0f} | {row['pass_mb']:.0f} | {row['seconds']:.1f} |")
    with open(args.output, "w") as f:
        json.dump({"sizes": SIZES, "threads": args.threads, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:  # one measurement, in the fresh process `measure` started
        print(json.dumps(child(json.loads(sys.argv[2]))))
    else:
        main()

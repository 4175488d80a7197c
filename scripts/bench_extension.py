#!/usr/bin/env python
"""Context extension, measured: passkey models trained at 16-64 tokens, extended 4x and 16x by each method,
evaluated as is and after a short fine-tune at the new length. Writes JSON and a markdown table.

    python scripts/bench_extension.py --learned runs/extrapolation/passkey-learned \\
        --rope runs/extrapolation/passkey-rope --output results/extension

(the folders are the models `scripts/bench_extrapolation.py` trains). Each row runs `scripts/extend_context.py`'s
`main` in-process: extend, then `train()` for `--finetune_steps` steps (learning rate 0 for the "as is" rows: one
step that changes nothing) and greedy exact match on `--num_eval` samples at the target length.
"""

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from transformers import HfArgumentParser  # noqa: E402

from hf_longctx.cli import extend_main  # noqa: E402
from hf_longctx.conversion.extend import SWITCH_METHODS  # noqa: E402
from hf_longctx.positions import POSITION_ENCODINGS  # noqa: E402


@dataclass
class Arguments:
    learned: str | None = field(default=None, metadata={"help": "Folder of a learned-position passkey model."})
    rope: str | None = field(default=None, metadata={"help": "Folder of a rope passkey model."})
    output: str = "results/extension"
    trained_length: int = 64
    factors: list[int] = field(default_factory=lambda: [4, 16])
    finetune_steps: int = 100
    num_eval: int = 200
    batch_size: int = 8


def run(folder, method, target, steps, args, workdir) -> float:
    out = workdir / f"{Path(folder).name}-{method}-{target}-{steps}"
    argv = [
        "--model", folder, "--output_dir", str(out), "--target_length", str(target), "--method", method,
        "--finetune_steps", str(steps),
        "--eval_lengths", str(target), "--num_eval", str(args.num_eval), "--disable_tqdm", "true",
        "--log_level", "warning",
    ]  # fmt: skip
    if method not in SWITCH_METHODS:  # a switch to an encoding that runs at any length takes no trained length
        argv += ["--trained_length", str(args.trained_length)]
    if steps:  # training flags only with a fine-tune (extend_context.py refuses them otherwise)
        argv += ["--per_device_train_batch_size", str(args.batch_size), "--warmup_steps", str(steps // 10)]
    extend_main(argv)
    return json.loads((out / "results.json").read_text())["eval"][str(target)]["exact_match"]


def main():
    (args,) = HfArgumentParser(Arguments).parse_args_into_dataclasses()
    if args.learned is None and args.rope is None:
        sys.exit("bench_extension.py: error: give --learned and / or --rope (a trained passkey model folder each).")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    workdir = Path("runs/extension")
    rows, start = [], time.time()
    for encoding, folder in (("learned", args.learned), ("rope", args.rope)):
        if folder is None:
            continue
        for method in POSITION_ENCODINGS[encoding].extension_methods:
            row = {"encoding": encoding, "method": method}
            for factor in args.factors:
                target = factor * args.trained_length
                row[f"{factor}x as is"] = run(folder, method, target, 0, args, workdir)
                row[f"{factor}x fine-tuned"] = run(folder, method, target, args.finetune_steps, args, workdir)
            rows.append(row)
            print(json.dumps(row), flush=True)
    command = "python scripts/bench_extension.py " + " ".join(sys.argv[1:])
    (output / "results.json").write_text(json.dumps({"command": command, "args": vars(args), "rows": rows}, indent=2))
    columns = [f"{f}x {kind}" for f in args.factors for kind in ("as is", "fine-tuned")]
    lines = [
        f"# Context extension of passkey models trained at 16-{args.trained_length} tokens",
        "",
        f"Command: `{command}` ({(time.time() - start) / 60:.1f} min). Exact match (greedy, {args.num_eval} samples) "
        f"at {', '.join(str(f * args.trained_length) for f in args.factors)} tokens; fine-tuned = "
        f"{args.finetune_steps} steps of batch {args.batch_size} on passkey at target/2..target tokens.",
        "",
        "| encoding | method | " + " | ".join(columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    lines += [f"| {r['encoding']} | {r['method']} | " + " | ".join(f"{r[c]:.2f}" for c in columns) + " |" for r in rows]
    (output / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

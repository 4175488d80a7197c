#!/usr/bin/env python
"""Extend the context of a trained hf_longctx model folder, optionally fine-tune at the new length, save it.

    python scripts/extend_context.py --model runs/rope --output_dir runs/rope-yarn4x --target_length 256 \\
        --method yarn --trained_length 64
    python scripts/extend_context.py --model runs/learned --output_dir runs/learned-copy --target_length 1024 \\
        --method copy --finetune_steps 200          # then a short fine-tune on passkey at the target length

Methods per encoding are listed in `hf_longctx/extend.py`. With `--finetune_steps`, training runs through the
library's `train()` (Seq2SeqTrainer) on `--task` with sources of target_length / 2 .. target_length tokens, and
evaluates at `--eval_lengths`; without it the extended model is saved and evaluated as is when `--eval_lengths`
is given.
"""

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, HfArgumentParser, Seq2SeqTrainingArguments  # noqa: E402

import hf_longctx  # noqa: E402,F401  (registers the Auto classes)
from hf_longctx.bench import evaluate_length  # noqa: E402
from hf_longctx.cli import given_flag_names  # noqa: E402
from hf_longctx.extend import extend_context, write_extension_card  # noqa: E402
from hf_longctx.model_card import invocation_command  # noqa: E402
from hf_longctx.tokenization import build_tokenizer  # noqa: E402
from hf_longctx.training import RESULTS_JSON, DataArguments, ModelArguments, train  # noqa: E402


@dataclass
class ExtendArguments:
    model: str = field(metadata={"help": "The trained model folder."})
    target_length: int = field(metadata={"help": "Source length to extend to."})
    method: str = field(metadata={"help": "copy | interpolate | alibi | relative (learned); linear | dynamic | yarn "
                                  "(rope); none (sinusoidal, relative, alibi)."})
    trained_length: int | None = field(default=None, metadata={"help": "Longest trained source (rope scaling)."})
    finetune_steps: int = field(default=0, metadata={"help": "Fine-tuning steps at the target length (0: none)."})
    task: str | None = field(
        default=None,
        metadata={"help": "Synthetic task for fine-tuning and evaluation; default: the task the source folder was "
                  "trained on (its results.json), else passkey."},
    )
    eval_lengths: list[int] = field(default_factory=list, metadata={"help": "Lengths to evaluate after extension."})
    num_eval: int = field(default=200, metadata={"help": "Samples per evaluation length."})
    eval_seed: int | None = field(
        default=None, metadata={"help": "Seed of the evaluation examples without fine-tuning (default 4321)."}
    )


# Seq2SeqTrainingArguments that mean something without fine-tuning (the folder, evaluation batches, logging)
USED_WITHOUT_FINETUNING = {"output_dir", "per_device_eval_batch_size", "log_level", "disable_tqdm", "report_to"}


def check_flags(args: ExtendArguments, argv: list[str]) -> None:
    """Flags that this run would not use are refused, naming them."""
    given = given_flag_names(argv)
    if "max_steps" in given:
        raise ValueError("--max_steps: the fine-tuning steps are --finetune_steps here.")
    training_fields = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    unused = sorted(given & training_fields - USED_WITHOUT_FINETUNING) if args.finetune_steps == 0 else []
    if unused:
        raise ValueError(
            f"{', '.join('--' + n for n in unused)} set training, but --finetune_steps is 0 (no fine-tuning): "
            "give --finetune_steps, or drop them."
        )
    if args.finetune_steps and args.eval_seed is not None:
        raise ValueError("--eval_seed is for evaluation without fine-tuning; after fine-tuning, train() evaluates.")


def main(argv=None):
    parser = HfArgumentParser((ExtendArguments, Seq2SeqTrainingArguments))
    parser.set_defaults(
        predict_with_generate=True, report_to="none", save_strategy="no", learning_rate=3e-4,
        per_device_train_batch_size=16, per_device_eval_batch_size=32, logging_steps=50,
    )  # fmt: skip
    argv = sys.argv[1:] if argv is None else argv
    args, training_args = parser.parse_args_into_dataclasses(args=argv)
    check_flags(args, argv)
    if args.finetune_steps < 0:
        raise ValueError(f"`finetune_steps` must be 0 (no fine-tuning) or more, got {args.finetune_steps}.")
    model = AutoModelForSeq2SeqLM.from_pretrained(args.model)
    if os.path.isdir(args.model) and not os.path.isfile(os.path.join(args.model, "tokenizer_config.json")):
        raise ValueError(
            f"{args.model} has no tokenizer (tokenizer_config.json): the extended folder keeps the model's own "
            "tokenizer, so save it there first (`tokenizer.save_pretrained(folder)`)."
        )
    tokenizer = AutoTokenizer.from_pretrained(args.model)  # the model's own, saved with the extended model
    if args.task is None:  # the source's own task, where its folder says which
        source_results = Path(args.model) / RESULTS_JSON
        args.task = json.loads(source_results.read_text()).get("task") if source_results.is_file() else None
        args.task = args.task or "passkey"
    if (args.finetune_steps or args.eval_lengths) and tokenizer.get_vocab() != build_tokenizer().get_vocab():
        raise ValueError(
            f"Fine-tuning and evaluation here use the synthetic `--task` {args.task!r}, whose vocabulary the tokenizer "
            f"of {args.model} does not have (a converted or text-trained model). Extend it without "
            "--finetune_steps / --eval_lengths, then fine-tune it on your own data."
        )
    record = {
        "source": args.model if not os.path.exists(args.model) else Path(args.model).resolve().name,
        "position_embedding_type": model.config.position_embedding_type,
        "method": args.method,
        "target_length": args.target_length,
        "trained_length": args.trained_length,
        "finetune_steps": args.finetune_steps,
        "task": args.task if args.finetune_steps or args.eval_lengths else None,
        "command": invocation_command(),
    }
    model = extend_context(model, args.target_length, args.method, args.trained_length)
    output_dir = Path(training_args.output_dir)
    if args.finetune_steps:
        training_args.max_steps = args.finetune_steps
        data_args = DataArguments(
            task=args.task,
            train_min_len=max(16, args.target_length // 2),
            train_max_len=args.target_length,
            eval_lengths=args.eval_lengths or [args.target_length],
            num_train=max(64, args.finetune_steps * training_args.per_device_train_batch_size),
            num_eval=args.num_eval,
        )
        model_args = ModelArguments(position_embedding_type=model.config.position_embedding_type)
        results = train(model_args, data_args, training_args, model=model)
        evaluated = results["eval"]
    else:  # save as extended; evaluate as is where asked (no training step, no training record)
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        model.eval()
        batch = training_args.per_device_eval_batch_size
        evaluated = {
            str(n): evaluate_length(model, tokenizer, args.task, n, args.num_eval, (args.eval_seed or 4321) + i, batch)
            for i, n in enumerate(args.eval_lengths)
        }
        results = {"eval": evaluated}
    results["extension"] = record
    (output_dir / RESULTS_JSON).write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_extension_card(output_dir, record["source"], record, evaluated)
    done = f"fine-tuned {args.finetune_steps} steps" if args.finetune_steps else "not fine-tuned"
    print(f"{record['source']} extended to {args.target_length} tokens ({args.method}, {done}) -> {output_dir}")
    for length, scores in evaluated.items():
        print(f"  {length} tokens: exact match {scores['exact_match']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])

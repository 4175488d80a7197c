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

import os
import sys
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoModelForSeq2SeqLM, HfArgumentParser, Seq2SeqTrainingArguments  # noqa: E402

import hf_longctx  # noqa: E402,F401  (registers the Auto classes)
from hf_longctx.extend import extend_context  # noqa: E402
from hf_longctx.tokenization import build_tokenizer  # noqa: E402
from hf_longctx.training import DataArguments, ModelArguments, train  # noqa: E402


@dataclass
class ExtendArguments:
    model: str = field(metadata={"help": "The trained model folder."})
    target_length: int = field(metadata={"help": "Source length to extend to."})
    method: str = field(metadata={"help": "copy | interpolate | alibi | relative (learned); linear | dynamic | yarn "
                                  "(rope); none (sinusoidal, relative, alibi)."})
    trained_length: int | None = field(default=None, metadata={"help": "Longest trained source (rope scaling)."})
    finetune_steps: int = field(default=0, metadata={"help": "Fine-tuning steps at the target length (0: none)."})
    task: str = field(default="passkey", metadata={"help": "Synthetic task for fine-tuning and evaluation."})
    eval_lengths: list[int] = field(default_factory=list, metadata={"help": "Lengths to evaluate after extension."})
    num_eval: int = field(default=200, metadata={"help": "Samples per evaluation length."})


def main(argv=None):
    parser = HfArgumentParser((ExtendArguments, Seq2SeqTrainingArguments))
    parser.set_defaults(
        predict_with_generate=True, report_to="none", save_strategy="no", learning_rate=3e-4,
        per_device_train_batch_size=16, per_device_eval_batch_size=32, logging_steps=50,
    )  # fmt: skip
    args, training_args = parser.parse_args_into_dataclasses(args=argv)
    model = AutoModelForSeq2SeqLM.from_pretrained(args.model)
    model = extend_context(model, args.target_length, args.method, args.trained_length)
    if args.finetune_steps == 0 and not args.eval_lengths:
        model.save_pretrained(training_args.output_dir)
        build_tokenizer().save_pretrained(training_args.output_dir)
        return
    training_args.max_steps = max(args.finetune_steps, 1)
    if args.finetune_steps == 0:
        training_args.learning_rate = 0.0  # evaluate the extended model as is: one step that changes nothing
    data_args = DataArguments(
        task=args.task,
        train_min_len=max(16, args.target_length // 2),
        train_max_len=args.target_length,
        eval_lengths=args.eval_lengths or [args.target_length],
        num_train=max(64, args.finetune_steps * training_args.per_device_train_batch_size),
        num_eval=args.num_eval,
    )
    model_args = ModelArguments(position_embedding_type=model.config.position_embedding_type)
    train(model_args, data_args, training_args, model=model)


if __name__ == "__main__":
    main(sys.argv[1:])

#!/usr/bin/env python
"""Train a LongCtx model on real text: T5 span corruption on a text column, or source -> target columns.

    # denoising on the shipped public-domain corpus (The Devil's Dictionary, data/README.md); about 1 min on 1 core
    python scripts/train_text.py --text_file data/devils_dictionary.txt --output_dir runs/text
    # source -> target columns of a JSON lines / CSV file: definition -> headword (a reverse dictionary)
    python scripts/train_text.py --text_file data/devils_dictionary.jsonl \\
        --source_column definition --target_column word --output_dir runs/reverse-dictionary
    # a datasets name (needs the hub) or a local folder of data files
    python scripts/train_text.py --dataset_name wikitext --dataset_config_name wikitext-2-raw-v1 --output_dir runs/wt2
    python scripts/train_text.py config.yaml     # every argument from one .json/.yaml file
    python scripts/train_text.py --help          # ModelArguments, TextDataArguments, Seq2SeqTrainingArguments

Without `--tokenizer_name` a byte-level BPE of `--tokenizer_vocab_size` tokens is trained on the text. `output_dir`
receives the model folder (loadable with `AutoModelForSeq2SeqLM` + `AutoTokenizer`) and `results.json`.
"""

import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # unset it (HF_HUB_OFFLINE=0) to load a dataset from the hub
os.environ.setdefault("OMP_NUM_THREADS", "1")  # see scripts/train.py
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import transformers  # noqa: E402
import yaml  # noqa: E402
from transformers import HfArgumentParser, Seq2SeqTrainingArguments  # noqa: E402

from hf_longctx.text_training import TextDataArguments, train_text  # noqa: E402
from hf_longctx.training import RESULTS_JSON, ModelArguments  # noqa: E402

# Defaults for the text demo (sized for the shipped 350 KB corpus: a larger vocabulary or longer chunks leave too
# few examples, and the tiny model memorises them); the command line or the file wins.
TEXT_DEMO_DEFAULTS = {
    "tokenizer_vocab_size": 2000,
    "chunk_length": 64,
    "output_dir": "runs/text",
    "max_steps": 1000,
    "learning_rate": 1e-3,
    "warmup_steps": 100,
    "lr_scheduler_type": "cosine",
    "weight_decay": 0.01,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 16,
    "predict_with_generate": True,
    "eval_strategy": "no",  # the held-out set is scored once after training
    "logging_steps": 100,
    "save_strategy": "no",
    "report_to": "none",
    "log_level": "info",
}


def parse_args(argv: list[str]) -> tuple[ModelArguments, TextDataArguments, Seq2SeqTrainingArguments]:
    parser = HfArgumentParser((ModelArguments, TextDataArguments, Seq2SeqTrainingArguments))
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        text = Path(argv[0]).read_text()
        values = json.loads(text) if argv[0].endswith(".json") else yaml.safe_load(text)
        return parser.parse_dict({**TEXT_DEMO_DEFAULTS, **(values or {})})
    parser.set_defaults(**TEXT_DEMO_DEFAULTS)
    return parser.parse_args_into_dataclasses(args=argv)


def main(argv: list[str] | None = None) -> None:
    model_args, text_args, training_args = parse_args(sys.argv[1:] if argv is None else argv)

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    logging.getLogger("hf_longctx").setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    datasets.utils.logging.set_verbosity(log_level)

    results = train_text(model_args, text_args, training_args)
    if training_args.should_save:
        print(f"\nModel and {RESULTS_JSON} in {training_args.output_dir}\n")
        print(json.dumps(results["eval"], indent=2))


if __name__ == "__main__":
    main()

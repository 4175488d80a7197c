"""Console commands (`[project.scripts]` in pyproject.toml); `scripts/*.py` are thin wrappers around the same mains.

    hf-longctx-train       ->  train_main        (scripts/train.py):      a synthetic task, evaluated at long lengths
    hf-longctx-train-text  ->  train_text_main   (scripts/train_text.py): real text, denoising or source -> target
    hf-longctx-push        ->  push_main         (scripts/push_to_hub.py): check, stage and upload a model folder

The training commands read their arguments from the command line or from one .json/.yaml file
(`HfArgumentParser` over the dataclasses of `training.py` / `text_training.py` and `Seq2SeqTrainingArguments`),
with demo defaults that the command line or the file override.
"""

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import transformers
import yaml
from transformers import HfArgumentParser, Seq2SeqTrainingArguments

from .hub import DEFAULT_COMMIT_MESSAGE, IncompleteModelFolderError, push_model_folder
from .text_training import TextDataArguments, train_text
from .training import RESULTS_JSON, RESULTS_TABLE, DataArguments, ModelArguments, NonFiniteTrainingError, train

logger = logging.getLogger(__name__)

# Seq2SeqTrainingArguments defaults that the demo needs changed; anything given on the command line or in the
# file wins. (Model and data defaults live in their dataclasses.)
DEMO_DEFAULTS = {
    "output_dir": "runs/demo",
    "max_steps": 4000,  # ~2.5 min on one core; 1500 steps already give 1.0 in distribution but less at 16x
    "learning_rate": 1e-3,
    "warmup_steps": 200,
    "lr_scheduler_type": "cosine",
    "weight_decay": 0.01,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 32,
    "train_sampling_strategy": "group_by_length",  # batches of similar lengths: less padding on CPU
    "predict_with_generate": True,
    "eval_strategy": "steps",
    "eval_steps": 1000,
    "logging_steps": 200,
    "save_strategy": "no",  # the final model is saved by train(); pass --save_strategy steps for checkpoints
    "report_to": "none",
    "log_level": "info",
}

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


@dataclass
class PushArguments:
    """Which trained folder goes to which hub repository."""

    folder: str = field(metadata={"help": "The model folder to push (a training run's output_dir)."})
    repo_id: str = field(metadata={"help": "The hub repository, `user/name` or `org/name`; created if missing."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    dry_run: bool = field(
        default=False,
        metadata={"help": "Check and stage the exact upload folder, print its files, upload nothing (no network)."},
    )
    commit_message: str = field(default=DEFAULT_COMMIT_MESSAGE, metadata={"help": "Message of the upload commit."})
    staging_dir: str | None = field(
        default=None,
        metadata={"help": "Where to stage the upload (new or empty); default: a temporary folder, kept by --dry_run."},
    )


def set_environment_defaults(offline: bool = True) -> None:
    """One OpenMP thread and (for training) offline hub access unless the environment says otherwise.

    `scripts/*.py` set these before importing torch. A console command imports hf_longctx (and so torch and
    huggingface_hub) before its main runs, so the settings are also applied to the already imported libraries.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The demo model's ops are tiny (a second thread gains ~30%), and on a shared machine a busy neighbour makes
    # multi-threaded spin-waits 10-50x slower. Export OMP_NUM_THREADS to change.
    if "OMP_NUM_THREADS" not in os.environ:
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
    # Everything is built locally; never reach for the hub (HF_HUB_OFFLINE=0 to load a dataset from it).
    if offline and "HF_HUB_OFFLINE" not in os.environ:
        import huggingface_hub.constants

        os.environ["HF_HUB_OFFLINE"] = "1"
        huggingface_hub.constants.HF_HUB_OFFLINE = True  # what is_offline_mode() reads (transformers too)
        datasets.config.HF_HUB_OFFLINE = True


# Demo defaults that would cancel a flag the user gave: flag -> (the setting it needs, the value that lets it take
# effect). `--save_steps 3` means nothing under the demo's save_strategy "no", `--num_train_epochs 2` nothing under
# its max_steps; where the user gave the flag and not the setting, the setting takes that value (HF's own default
# for save_strategy and max_steps).
OVERRIDDEN_BY_DEMO_DEFAULTS = {
    "save_steps": ("save_strategy", "steps"),
    "save_total_limit": ("save_strategy", "steps"),
    "num_train_epochs": ("max_steps", -1),
    "eval_steps": ("eval_strategy", "steps"),  # the text demo evaluates once, after training, by default
}


def given_flag_names(argv: list[str]) -> set[str]:
    """The `--flag` names of a command line (`--a-b=1` -> `a_b`)."""
    return {arg[2:].split("=", 1)[0].replace("-", "_") for arg in argv if arg.startswith("--")}


def _demo_defaults_for(defaults: dict, given: set[str]) -> dict:
    """`defaults` less those that would override what the user gave (`OVERRIDDEN_BY_DEMO_DEFAULTS`)."""
    defaults = dict(defaults)
    for flag, (name, hf_value) in OVERRIDDEN_BY_DEMO_DEFAULTS.items():
        if flag in given and name not in given and name in defaults:
            logger.warning(f"--{flag} given: {name} is {hf_value!r}, not the demo's {defaults[name]!r}.")
            defaults[name] = hf_value
    if launched_on_cpu_processes() and "use_cpu" not in given:
        # Without an accelerator, Trainer joins the launcher's process group only in its CPU mode; otherwise every
        # rank trains alone on the whole data (ARCHITECTURE.md T16)
        defaults["use_cpu"] = True
    return defaults


def launched_on_cpu_processes() -> bool:
    """Several processes (torchrun / accelerate launch set WORLD_SIZE) on a machine without an accelerator."""
    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available()


def _check_flags_take_effect(training_args: Seq2SeqTrainingArguments, given: set[str]) -> None:
    """A flag that the other flags given make meaningless is refused, naming both."""
    if {"save_steps", "save_strategy"} <= given and training_args.save_strategy != "steps":
        raise ValueError(
            f"--save_steps {training_args.save_steps:g} does nothing with --save_strategy "
            f"{training_args.save_strategy.value}; use --save_strategy steps, or drop --save_steps."
        )
    if {"eval_steps", "eval_strategy"} <= given and training_args.eval_strategy != "steps":
        raise ValueError(
            f"--eval_steps {training_args.eval_steps:g} does nothing with --eval_strategy "
            f"{training_args.eval_strategy.value}; use --eval_strategy steps, or drop --eval_steps."
        )
    if {"num_train_epochs", "max_steps"} <= given and training_args.max_steps > 0:
        raise ValueError(
            f"--num_train_epochs {training_args.num_train_epochs:g} does nothing with --max_steps "
            f"{training_args.max_steps} (max_steps wins in Trainer); give one of the two."
        )


def _parse_training(dataclass_types, defaults: dict, argv: list[str]):
    # no abbreviations: `--save_step 3` would set save_steps past the check that makes it take effect
    parser = HfArgumentParser(dataclass_types, allow_abbrev=False)
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        text = Path(argv[0]).read_text()
        values = (json.loads(text) if argv[0].endswith(".json") else yaml.safe_load(text)) or {}
        given = set(values)
        parsed = parser.parse_dict({**_demo_defaults_for(defaults, given), **values})
    else:
        given = given_flag_names(argv)
        parser.set_defaults(**_demo_defaults_for(defaults, given))
        parsed = parser.parse_args_into_dataclasses(args=argv)
    _check_flags_take_effect(parsed[-1], given)
    return parsed


def parse_train_args(argv: list[str]) -> tuple[ModelArguments, DataArguments, Seq2SeqTrainingArguments]:
    return _parse_training((ModelArguments, DataArguments, Seq2SeqTrainingArguments), DEMO_DEFAULTS, argv)


def parse_train_text_args(argv: list[str]) -> tuple[ModelArguments, TextDataArguments, Seq2SeqTrainingArguments]:
    return _parse_training((ModelArguments, TextDataArguments, Seq2SeqTrainingArguments), TEXT_DEMO_DEFAULTS, argv)


def parse_push_args(argv: list[str]) -> PushArguments:
    (args,) = HfArgumentParser(PushArguments).parse_args_into_dataclasses(args=argv)
    return args


def _setup_logging(log_level: int) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    logging.getLogger("hf_longctx").setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    datasets.utils.logging.set_verbosity(log_level)


def train_main(argv: list[str] | None = None) -> None:
    """`hf-longctx-train`: train on a synthetic task, evaluate at every `eval_lengths`, save folder + model card."""
    set_environment_defaults()
    model_args, data_args, training_args = parse_train_args(sys.argv[1:] if argv is None else argv)
    _setup_logging(training_args.get_process_log_level())
    try:
        train(model_args, data_args, training_args)
    except NonFiniteTrainingError as error:
        sys.exit(f"hf-longctx-train: error: {error}")
    if training_args.should_save:
        print(f"\nModel, model card, results.json and {RESULTS_TABLE} in {training_args.output_dir}\n")
        print((Path(training_args.output_dir) / RESULTS_TABLE).read_text())


def train_text_main(argv: list[str] | None = None) -> None:
    """`hf-longctx-train-text`: train on real text, score the held-out examples, save folder + model card."""
    set_environment_defaults()
    model_args, text_args, training_args = parse_train_text_args(sys.argv[1:] if argv is None else argv)
    _setup_logging(training_args.get_process_log_level())
    try:
        results = train_text(model_args, text_args, training_args)
    except NonFiniteTrainingError as error:
        sys.exit(f"hf-longctx-train-text: error: {error}")
    if training_args.should_save:
        print(f"\nModel, model card and {RESULTS_JSON} in {training_args.output_dir}\n")
        print(json.dumps(results["eval"], indent=2))


def push_main(argv: list[str] | None = None) -> None:
    """`hf-longctx-push`: check a trained folder, stage the exact upload, and push it (or only stage: --dry_run)."""
    set_environment_defaults(offline=False)  # the upload needs the hub
    args = parse_push_args(sys.argv[1:] if argv is None else argv)
    _setup_logging(logging.INFO)
    try:
        result = push_model_folder(
            args.folder,
            args.repo_id,
            private=args.private,
            commit_message=args.commit_message,
            dry_run=args.dry_run,
            staging_dir=args.staging_dir,
        )
    except (IncompleteModelFolderError, ValueError, RuntimeError) as error:
        print(f"hf-longctx-push: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"{'Staged (dry run, nothing uploaded)' if args.dry_run else 'Uploaded'}: {len(result.files)} files")
    for name in result.files:
        print(f"  {name}")
    print(f"staging folder: {result.staging_dir}")
    if result.url:
        print(f"commit: {result.url}")


__all__ = [
    "DEMO_DEFAULTS",
    "TEXT_DEMO_DEFAULTS",
    "PushArguments",
    "parse_train_args",
    "parse_train_text_args",
    "parse_push_args",
    "train_main",
    "train_text_main",
    "push_main",
]

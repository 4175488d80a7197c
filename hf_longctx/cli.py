"""Console commands (`[project.scripts]` in pyproject.toml); `scripts/*.py` are thin wrappers around the same mains.

    hf-longctx-train       ->  train_main        (scripts/train.py):      a synthetic task, evaluated at long lengths
    hf-longctx-train-text  ->  train_text_main   (scripts/train_text.py): real text, denoising or source -> target
    hf-longctx-push        ->  push_main         (scripts/push_to_hub.py): check, stage and upload a model folder
    hf-longctx-extend      ->  extend_main       (scripts/extend_context.py): extend a trained folder's context

The training commands read their arguments from the command line or from one .json/.yaml file
(`HfArgumentParser` over the dataclasses of `training/trainer.py` / `training/text.py` and `Seq2SeqTrainingArguments`),
with demo defaults that the command line or the file override.
"""

import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import transformers
import yaml
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, HfArgumentParser, Seq2SeqTrainingArguments

from .bench.extrapolation import exact_match_at_length
from .conversion.extend import extend_context, write_extension_card
from .data.tasks import TASKS, source_lengths
from .data.tokenization import build_tokenizer
from .hub.model_card import invocation_command
from .hub.push import DEFAULT_COMMIT_MESSAGE, IncompleteModelFolderError, push_model_folder
from .positions import POSITION_ENCODINGS
from .training.text import TextDataArguments, check_text_flags, train_text
from .training.trainer import (
    RESULTS_JSON,
    RESULTS_TABLE,
    DataArguments,
    ModelArguments,
    NonFiniteTrainingError,
    check_learning_rate,
    train,
)

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
    if training_args.max_steps == 0 or training_args.max_steps < -1:  # Trainer runs one step, or its 3 epochs
        raise ValueError(
            f"--max_steps {training_args.max_steps} "
            + ("trains nothing" if training_args.max_steps == 0 else "is not a number of steps")
            + ": give a positive number of steps, or -1 to train --num_train_epochs."
        )
    check_learning_rate(training_args.learning_rate, "--learning_rate")
    if training_args.max_steps == -1 and training_args.num_train_epochs <= 0:
        raise ValueError(
            f"--num_train_epochs {training_args.num_train_epochs:g} trains nothing: give a positive number of "
            "epochs (or --max_steps)."
        )
    decoding = sorted({"generation_num_beams", "generation_max_length", "generation_config"} & given)
    if decoding and not training_args.predict_with_generate:
        raise ValueError(
            ", ".join(f"--{name}" for name in decoding)
            + (" sets" if len(decoding) == 1 else " set")
            + " how the held-out examples are decoded, and --predict_with_generate false scores the loss only: drop "
            + ("it" if len(decoding) == 1 else "them")
            + ", or drop --predict_with_generate false."
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
    if isinstance(parsed[1], TextDataArguments):
        check_text_flags(parsed[1], given)
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


# ---------------------------------------------------------------- hf-longctx-extend
@dataclass
class ExtendArguments:
    model: str = field(metadata={"help": "The trained model folder."})
    target_length: int = field(metadata={"help": "Source length to extend to."})
    method: str = field(metadata={"help": "; ".join(
        f"{' | '.join(cls.extension_methods)} ({name})" for name, cls in POSITION_ENCODINGS.items() if cls.extension_methods
    )})
    trained_length: int | None = field(default=None, metadata={"help": "Longest trained source (rope scaling)."})
    finetune_steps: int = field(default=0, metadata={"help": "Fine-tuning steps at the target length (0: none)."})
    task: str | None = field(
        default=None,
        metadata={"help": "Synthetic task for fine-tuning and evaluation; default: the task the source folder was "
                  "trained on (its results.json), else passkey."},
    )
    num_records: int | None = field(
        default=None,
        metadata={"help": "Records per source of `multikey`; default: the source folder's (its results.json), else 2."},
    )
    eval_lengths: list[int] = field(default_factory=list, metadata={"help": "Lengths to evaluate after extension."})
    num_eval: int = field(default=200, metadata={"help": "Samples per evaluation length."})
    eval_seed: int | None = field(
        default=None, metadata={"help": "Seed of the evaluation examples without fine-tuning (default 4321)."}
    )


# Seq2SeqTrainingArguments that mean something without fine-tuning (the folder, evaluation batches, logging)
USED_WITHOUT_FINETUNING = {"output_dir", "per_device_eval_batch_size", "log_level", "disable_tqdm", "report_to"}


def check_extend_flags(args: ExtendArguments, argv: list[str]) -> None:
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
    if not args.finetune_steps and not args.eval_lengths:
        idle = sorted(given & {"task", "num_eval", "eval_seed"})
        if idle:
            raise ValueError(
                f"{', '.join('--' + n for n in idle)} set the fine-tuning or evaluation, and this run does neither "
                "(no --finetune_steps, no --eval_lengths): give one, or drop them."
            )
    if args.finetune_steps and "num_train_epochs" in given:
        raise ValueError("--num_train_epochs: the fine-tuning runs --finetune_steps steps, whatever the epochs; drop it.")


FINETUNE_MIN_LENGTH = 16  # the shortest fine-tuning source (half the target length, at least this)


def resolve_extend_task(args: ExtendArguments) -> None:
    """The task (and its records) fine-tuning and evaluation use: the given ones, else the source folder's own (its
    results.json), else passkey; then every evaluation input is checked by its flag's name, before any model is
    loaded or any folder written."""
    source_results = Path(args.model) / RESULTS_JSON
    source = json.loads(source_results.read_text()) if source_results.is_file() else {}
    if args.task is None:
        args.task = source.get("task") or "passkey"
    if args.num_records is None and args.task == source.get("task") and TASKS[args.task].record_tokens:
        args.num_records = (source.get("data_args") or {}).get("num_records")
    if not (args.finetune_steps or args.eval_lengths):
        return
    if args.task not in TASKS:
        raise ValueError(f"--task {args.task!r} is not a task; valid: {', '.join(TASKS)}.")
    if args.num_records is not None and not TASKS[args.task].record_tokens:
        raise ValueError(f"--num_records {args.num_records} means nothing to task {args.task!r}, which has no records: drop it.")
    if args.num_eval < 1:
        raise ValueError(f"--num_eval {args.num_eval}: give at least 1 example per length.")
    shortest, longest, needs = source_lengths(args.task, args.num_records)
    outside = [n for n in args.eval_lengths if n < shortest or (longest is not None and n > longest)]
    if outside:
        raise ValueError(
            f"--eval_lengths has {', '.join(map(str, outside))}, outside what {args.task} fills (at least {shortest} "
            f"tokens: {needs}" + (f"; at most {longest}" if longest else "") + "): drop them, or give other lengths."
        )
    if args.finetune_steps and args.target_length < max(FINETUNE_MIN_LENGTH, shortest):
        raise ValueError(
            f"--target_length {args.target_length} is below the {max(FINETUNE_MIN_LENGTH, shortest)} tokens of the "
            "shortest fine-tuning source: extend to a longer target, or drop --finetune_steps."
        )


def extend_main(argv: list[str] | None = None) -> None:
    """Extend a trained folder's context (scripts/extend_context.py, `hf-longctx-extend`)."""
    parser = HfArgumentParser((ExtendArguments, Seq2SeqTrainingArguments))
    parser.set_defaults(
        predict_with_generate=True, report_to="none", save_strategy="no", learning_rate=3e-4,
        per_device_train_batch_size=16, per_device_eval_batch_size=32, logging_steps=50,
    )  # fmt: skip
    argv = sys.argv[1:] if argv is None else argv
    args, training_args = parser.parse_args_into_dataclasses(args=argv)
    check_extend_flags(args, argv)
    if args.finetune_steps < 0:
        raise ValueError(f"`finetune_steps` must be 0 (no fine-tuning) or more, got {args.finetune_steps}.")
    resolve_extend_task(args)
    model = AutoModelForSeq2SeqLM.from_pretrained(args.model)
    if os.path.isdir(args.model) and not os.path.isfile(os.path.join(args.model, "tokenizer_config.json")):
        raise ValueError(
            f"{args.model} has no tokenizer (tokenizer_config.json): the extended folder keeps the model's own "
            "tokenizer, so save it there first (`tokenizer.save_pretrained(folder)`)."
        )
    tokenizer = AutoTokenizer.from_pretrained(args.model)  # the model's own, saved with the extended model
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
        "num_records": args.num_records if args.finetune_steps or args.eval_lengths else None,
        "command": invocation_command(),
    }
    model = extend_context(model, args.target_length, args.method, args.trained_length)
    output_dir = Path(training_args.output_dir)
    if args.finetune_steps:
        training_args.max_steps = args.finetune_steps
        data_args = DataArguments(
            task=args.task,
            train_min_len=max(FINETUNE_MIN_LENGTH, args.target_length // 2),
            train_max_len=args.target_length,
            eval_lengths=args.eval_lengths or [args.target_length],
            num_train=max(64, args.finetune_steps * training_args.per_device_train_batch_size),
            num_eval=args.num_eval,
            num_records=args.num_records,
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
            str(n): exact_match_at_length(
                model, tokenizer, args.task, n, args.num_eval, (args.eval_seed or 4321) + i, batch, args.num_records
            )
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


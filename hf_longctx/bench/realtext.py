"""Does more context hurt? Perplexity of the same next tokens after longer and longer real-text contexts.

Benchmark A of the issue "Long context on real text", in the form of the ALiBi paper's Figure 1 (Press et al.
2022): every model is trained to continue a passage (source: the `n` tokens before a window of a book; target:
the next `target_length` tokens, teacher-forced cross-entropy), with `n` sampled up to `train_context`; then the
same held-out target windows are scored with `n` = each of `lengths` tokens of preceding context, so any change in
perplexity comes from the context alone. Corpus: `data/kjv_books.jsonl.gz` (66 books; whole books held out),
tokenized by a byte-level BPE trained on the training books.

Rows: each hf_longctx encoding (`encodings`; +logn: the same model with `cross_attention_logn_length` at the
trained length, at inference only; rope+yarn: the rope model with YaRN at factor n / trained, at inference only),
and HF's T5 / BART / Marian at the same size (`references`), trained by the same code and budget. A model that
cannot run a length (a table of positions, out of memory) gets the error in its cell, as the paper reports T5's.

Benchmark B, a needle in a real haystack (Kamradt 2023; RULER, Hsieh et al. 2024): a model of each row's architecture
(`needle_start`: "scratch", a fresh one; "trained", the row's benchmark A model) learns, for `needle_steps` steps, to
answer "What is the secret code?" about a needle sentence ("The secret code is 48213.") at a random depth of a
training passage of `min_train_context`-`train_context` tokens (`data.text.needle_haystack_dataset`); it is scored by
greedy exact match on `needle_samples` held-out passages per length of `needle_lengths`, in DEPTH_BINS depth bins of
equal share, with the row's inference options. `steps=0` runs benchmark B alone.

`config_overrides` sets LongCtxConfig fields (scripts/train.py's `--config_overrides`, e.g. the encoder window
`encoder_local_radius=16`) on every hf_longctx row's models; the HF references are built as HF builds them.

`run_realtext(args)` writes `results.json` (protocol, command, environment, every row) after each row,
`results.md`, `perplexity_vs_length.png` and (benchmark B) `needle_depth_heatmap.png` under `args.output_dir`; `--resume` keeps the rows already there.
"""

import json
import math
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import load_dataset
from transformers import AutoModelForSeq2SeqLM
from transformers.utils import logging

from ..data.tasks import DEPTH_BINS, depth_bin_labels
from ..data.text import (
    context_target_dataset,
    document_token_ids,
    needle_haystack_dataset,
    needle_min_length,
    target_windows,
    train_bpe_tokenizer,
)
from ..hub.model_card import invocation_command
from ..positions import encoding_names
from ..training.trainer import (
    RESULTS_JSON,
    RESULTS_TABLE,
    ModelArguments,
    build_model,
    check_learning_rate,
    exact_match_by_depth,
    fit,
    load_metric,
    parse_config_overrides,
    start_run,
)
from .environment import check_same_defaults, check_same_protocol, config_defaults, environment, previous_results
from .extrapolation import load_model, recipe_training_args, rope_parameters_for
from .report import depth_heatmap

logger = logging.get_logger(__name__)

REFERENCES = ("t5", "bart", "marian")
NEEDLE_STARTS = ("scratch", "trained")  # benchmark B's model: a fresh one, or the row's benchmark A model
# fields that shape benchmark A only: `steps=0` (no A) refuses them where given
BENCHMARK_A_FIELDS = ("learning_rate", "lengths", "num_eval_windows", "num_train_windows", "target_length")
PLOT = "perplexity_vs_length.png"
NEEDLE_PLOT = "needle_depth_heatmap.png"
# `--quick`: a smoke run (CI's); flags given after it still win, as argparse keeps the last value
QUICK_FLAGS = [
    "--encodings", "alibi", "rope", "--references", "t5", "--vocab_size", "400", "--d_model", "32", "--d_ff", "64",
    "--steps", "4", "--warmup_steps", "1", "--batch_size", "4", "--num_train_windows", "32", "--train_context", "48", "--min_train_context",
    "40", "--target_length", "8", "--lengths", "48", "96", "--num_eval_windows", "4",
]  # fmt: skip
QUICK_NEEDLE_FLAGS = ["--needle_steps", "4", "--needle_lengths", "48", "96", "--needle_samples", "5"]


def quick_argv(argv: list[str]) -> list[str]:
    """`--quick` expanded (its flags for a benchmark the command turns off, B with `--needle_steps 0` or A with
    `--steps 0`, left out: a preset is not a value the user gave); flags given after it still win."""
    rest = [a for a in argv if a != "--quick"]
    given = dict(zip(rest, rest[1:], strict=False))
    quick = QUICK_FLAGS
    if given.get("--steps") == "0":  # benchmark A's preset flags (and its steps) dropped with their values
        a_only = {f"--{name}" for name in (*BENCHMARK_A_FIELDS, "steps")}
        flags = [i for i, a in enumerate(quick) if a.startswith("--")] + [len(quick)]
        quick = [a for i, j in zip(flags, flags[1:], strict=False) if quick[i] not in a_only for a in quick[i:j]]
    return quick + ([] if given.get("--needle_steps") == "0" else QUICK_NEEDLE_FLAGS) + rest


@dataclass
class RealTextArguments:
    encodings: list[str] = field(
        default_factory=lambda: list(encoding_names(encoder_allowed=True)),
        metadata={"help": "hf_longctx encodings, a row each (default: every registered one)."},
    )
    references: list[str] = field(
        default_factory=lambda: list(REFERENCES), metadata={"help": "HF references at the same size: t5 bart marian."}
    )
    logn: bool | None = field(
        default=None,
        metadata={"help": "Also score each hf_longctx row with logn at inference (default: yes, where there is one)."},
    )
    yarn: bool | None = field(
        default=None, metadata={"help": "Also score the rope row with YaRN at inference (default: yes, with rope)."}
    )
    corpus: str = field(default="data/kjv_books.jsonl.gz", metadata={"help": "JSON lines: `text` and `split`."})
    vocab_size: int = field(default=4000, metadata={"help": "Byte-level BPE trained on the training books."})
    d_model: int = 128
    layers: int = field(default=2, metadata={"help": "Layers per stack."})
    num_heads: int = 4
    d_ff: int = 512
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "LongCtxConfig fields set on every hf_longctx row's models, as scripts/train.py's "
            "--config_overrides (e.g. 'encoder_local_radius=16'); the HF references are built as HF builds them."
        },
    )
    train_context: int = field(default=256, metadata={"help": "Longest training context (n is sampled up to it)."})
    min_train_context: int = field(default=32, metadata={"help": "Shortest training context."})
    target_length: int = field(default=32, metadata={"help": "Tokens to predict after the context."})
    num_train_windows: int = 20000
    steps: int = field(
        default=3000, metadata={"help": "Benchmark A's training steps (0: no benchmark A; B from scratch)."}
    )
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    lengths: list[int] = field(
        default_factory=lambda: [256, 512, 1024, 2048, 4096, 8192],
        metadata={"help": "Context lengths scored, each on the same held-out targets."},
    )
    num_eval_windows: int = field(default=64, metadata={"help": "Held-out target windows (the same at every n)."})
    eval_tokens_per_batch: int = field(default=16384, metadata={"help": "Context tokens per evaluation batch."})
    needle_steps: int = field(
        default=0,
        metadata={
            "help": "Benchmark B: steps of needle training of each row's model (0, the default: no benchmark B; "
            "docs/realtext.md's run: 1000, with --needle_learning_rate 2e-3 --config_overrides encoder_local_radius=16)."
        },
    )
    needle_start: str = field(
        default="scratch",
        metadata={
            "help": "Benchmark B's model: 'scratch' (a fresh model of the row's architecture) or 'trained' (the "
            "row's benchmark A model, trained on)."
        },
    )
    needle_learning_rate: float = field(
        default=1e-3, metadata={"help": "Benchmark B: peak learning rate of the needle training (same schedule)."}
    )
    needle_lengths: list[int] = field(
        default_factory=lambda: [256, 512, 1024, 2048, 4096, 8192],
        metadata={"help": "Benchmark B: source lengths (tokens) the needle is sought in."},
    )
    needle_samples: int = field(
        default=200, metadata={"help": f"Benchmark B: needles per length, in {DEPTH_BINS} depth bins of equal share."}
    )
    seed: int = 42
    output_dir: str = "runs/realtext-results"  # a folder that holds results needs --resume
    work_dir: str = "runs/realtext"
    resume: bool = field(default=False, metadata={"help": "Keep the rows already in output_dir/results.json."})

    def __post_init__(self):
        unknown = [name for name in self.references if name not in REFERENCES]
        if unknown:
            raise ValueError(f"`references` {unknown} are not HF references here; valid: {', '.join(REFERENCES)}.")
        if parse_config_overrides(self.config_overrides) and not self.encodings:  # a misspelled field: refused here
            raise ValueError(
                "`config_overrides` sets LongCtxConfig fields of the hf_longctx rows, and `encodings` is empty: add "
                "one, or drop --config_overrides (the HF references take none)."
            )
        if self.needle_start not in NEEDLE_STARTS:
            raise ValueError(
                f"`needle_start`={self.needle_start!r} is not one of {', '.join(map(repr, NEEDLE_STARTS))} (a fresh "
                "model, or the row's benchmark A model)."
            )
        if self.min_train_context > self.train_context:
            raise ValueError(
                f"`min_train_context`={self.min_train_context} exceeds `train_context`={self.train_context}."
            )
        if not self.lengths:
            raise ValueError("`lengths` must list at least one context length.")
        for name in ("learning_rate", "needle_learning_rate"):
            check_learning_rate(getattr(self, name), f"`{name}`")
        for name, benchmark in (("steps", "A"), ("needle_steps", "B")):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"`{name}`={getattr(self, name)}: give a number of steps, or 0 for no benchmark {benchmark}."
                )
        if self.needle_steps and (not self.needle_lengths or self.needle_samples < 1):
            raise ValueError(
                f"`needle_steps`={self.needle_steps} asks for benchmark B, which needs `needle_lengths` (given "
                f"{self.needle_lengths}) and `needle_samples` >= 1 (given {self.needle_samples}); or --needle_steps 0."
            )
        if self.yarn and "rope" not in self.encodings:
            raise ValueError("`yarn` rescales the rope row, and `encodings` has no rope: add rope, or drop --yarn.")
        if self.logn and not self.encodings:
            raise ValueError("`logn` rescales hf_longctx rows, and `encodings` is empty: add one, or drop --logn.")
        defaults = {
            f.name: f.default_factory() if f.default_factory is not MISSING else f.default for f in fields(self)
        }
        if not self.needle_steps:
            given = [
                n
                for n in defaults
                if n.startswith("needle_") and n != "needle_steps" and getattr(self, n) != defaults[n]
            ]
            if given:
                raise ValueError(
                    f"`needle_steps`=0 turns benchmark B off, which {', '.join(f'`{n}`' for n in given)} set up: drop "
                    f"{'it' if len(given) == 1 else 'them'}, or give --needle_steps."
                )
        elif self.needle_samples % DEPTH_BINS:
            raise ValueError(
                f"`needle_samples`={self.needle_samples} must be a multiple of {DEPTH_BINS}, the depth bins that share "
                f"them equally; e.g. {DEPTH_BINS * max(1, round(self.needle_samples / DEPTH_BINS))}."
            )
        if not self.steps:
            if not self.needle_steps:
                raise ValueError(
                    "`steps`=0 trains no benchmark A model, so it needs benchmark B from scratch: give --needle_steps, "
                    "or --steps for benchmark A."
                )
            if self.needle_start != "scratch":
                raise ValueError(
                    f"`steps`=0 trains no benchmark A model, and `needle_start`={self.needle_start!r} starts benchmark B "
                    "from it: give --steps, or --needle_start scratch."
                )
            given = [n for n in BENCHMARK_A_FIELDS if getattr(self, n) != defaults[n]]
            if given:
                raise ValueError(
                    f"`steps`=0 turns benchmark A off, which {', '.join(f'`{n}`' for n in given)} set up: drop "
                    f"{'it' if len(given) == 1 else 'them'}, or give --steps."
                )
        for name in ("steps", "needle_steps"):
            if getattr(self, name) and self.warmup_steps >= getattr(self, name):
                raise ValueError(
                    f"`warmup_steps`={self.warmup_steps} is not below `{name}`={getattr(self, name)}: the learning "
                    f"rate would never reach its peak; lower --warmup_steps."
                )
        self.yarn = "rope" in self.encodings if self.yarn is None else self.yarn
        self.logn = bool(self.encodings) if self.logn is None else self.logn


def plan(args: RealTextArguments) -> list[dict]:
    """The rows, in order: each encoding (then +logn, and rope+yarn), then the references."""
    rows = []
    for encoding in args.encodings:
        rows.append({"name": encoding, "model": encoding, "logn": False, "yarn": False})
        if args.yarn and encoding == "rope":
            rows.append({"name": "rope+yarn", "model": encoding, "logn": False, "yarn": True})
        if args.logn:
            rows.append({"name": f"{encoding}+logn", "model": encoding, "logn": True, "yarn": False})
    return rows + [{"name": ref, "model": ref, "logn": False, "yarn": False} for ref in args.references]


def corpus_documents(args: RealTextArguments):
    """(tokenizer, training documents, held-out documents): a BPE trained on the training books, and both as ids."""
    books = load_dataset("json", data_files=args.corpus, split="train")
    train = [row["text"] for row in books if row["split"] == "train"]
    test = [row["text"] for row in books if row["split"] == "test"]
    if not train or not test:
        raise ValueError(
            f"{args.corpus} needs books with `split` 'train' and 'test'; it has {len(train)} / {len(test)}."
        )
    tokenizer = train_bpe_tokenizer(train, vocab_size=args.vocab_size, num_sentinels=0)
    return tokenizer, document_token_ids(train, tokenizer), document_token_ids(test, tokenizer)


def table_rows(args: RealTextArguments, model_name: str) -> int | None:
    """Rows of a model's position table: a trained table (`learned`, BART) holds the trained lengths only and
    fails past them, which the results report (as the ALiBi paper's table reports T5 out of memory); Marian's
    sinusoids are fixed, so its table reaches the longest evaluation; T5 has none."""
    if model_name == "t5":
        return None
    return max(args.lengths) + 1 if model_name == "marian" else args.train_context + 1


def fresh_model(args: RealTextArguments, model_name: str, tokenizer):
    """A freshly initialised model of a row (an hf_longctx encoding, with `config_overrides`; or an HF reference) at
    the benchmark's sizes."""
    reference = model_name if model_name in REFERENCES else None
    model_args = ModelArguments(
        d_model=args.d_model,
        encoder_layers=args.layers,
        decoder_layers=args.layers,
        num_heads=args.num_heads,
        d_ff=args.d_ff,
        reference=reference,
        position_embedding_type="alibi" if reference else model_name,
        max_position_embeddings=table_rows(args, model_name),
        cross_attention_logn_length="off",  # the +logn rows switch it on at inference
        config_overrides=None if reference else args.config_overrides,
    )
    trained = args.train_context + 1
    return build_model(model_args, tokenizer, max_length=trained, trained_length=trained)


def train_row(args: RealTextArguments, model_name: str, tokenizer, train_docs, folder: Path) -> dict:
    """One model trained to continue passages of the training books; saved to `folder`."""
    model = fresh_model(args, model_name, tokenizer)
    windows = target_windows(train_docs, args.train_context, args.target_length, args.num_train_windows, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    contexts = rng.integers(args.min_train_context, args.train_context + 1, size=len(windows)).tolist()
    dataset = context_target_dataset(train_docs, windows, contexts, args.target_length, tokenizer.eos_token_id)
    return _train(args, model, tokenizer, dataset, args.steps, args.learning_rate, folder)


def train_needle(args: RealTextArguments, model_name: str, trained: Path, tokenizer, train_docs, folder: Path) -> dict:
    """Benchmark B's model: a fresh model of the row (`needle_start` scratch) or its trained model (`trained`) after
    `needle_steps` steps on needles in training passages of `min_train_context`-`train_context` tokens (a fresh needle
    each example); saved to `folder`."""
    if args.needle_start == "trained" and not (trained / "config.json").is_file():
        raise FileNotFoundError(
            f"{trained} holds no trained model, and benchmark B starts from it: it is made by this command's "
            f"training (its --work_dir); rerun with the --work_dir the rows were trained in, or without --resume."
        )
    rng = np.random.default_rng(args.seed + 3)
    lengths = rng.integers(args.min_train_context, args.train_context + 1, size=args.needle_steps * args.batch_size)
    dataset = needle_haystack_dataset(train_docs, tokenizer, lengths.tolist(), seed=args.seed + 4)
    if args.needle_start == "scratch":
        model = fresh_model(args, model_name, tokenizer)
    else:
        model = AutoModelForSeq2SeqLM.from_pretrained(trained)
    dataset = dataset.remove_columns(["code", "depth"])
    return _train(args, model, tokenizer, dataset, args.needle_steps, args.needle_learning_rate, folder)


def _train(args: RealTextArguments, model, tokenizer, dataset, steps: int, learning_rate: float, folder: Path) -> dict:
    """The benchmarks' recipe for `steps` steps, without in-training evaluation; the model saved to `folder`."""
    training_args = recipe_training_args(
        folder, steps, learning_rate, args.warmup_steps, args.batch_size, steps, args.seed
    )
    training_args.eval_strategy, training_args.predict_with_generate = "no", False
    start_run(training_args)
    started = time.perf_counter()
    _, output = fit(model, tokenizer, training_args, dataset, None, None, None, None)
    tokenizer.save_pretrained(folder)
    return {
        "steps": output.global_step,
        "train_loss": output.training_loss,
        "train_seconds": round(time.perf_counter() - started, 1),
        "num_parameters": model.num_parameters(),
    }


@torch.no_grad()
def perplexity(model, dataset, tokens_per_batch: int) -> dict:
    """exp(mean cross-entropy) over every target token (EOS included), teacher-forced, on the model's device."""
    length = len(dataset[0]["input_ids"])
    batch_size = max(1, tokens_per_batch // length)
    total, count = 0.0, 0
    for start in range(0, len(dataset), batch_size):
        batch = dataset[start : start + batch_size]
        input_ids = torch.tensor(batch["input_ids"], device=model.device)
        labels = torch.tensor(batch["labels"], device=model.device)
        logits = model(input_ids=input_ids, labels=labels).logits
        total += F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="sum").item()
        count += labels.numel()
    return {"perplexity": math.exp(total / count), "nll": total / count, "num_tokens": count}


@torch.no_grad()
def needle_exact_match(model, dataset, tokenizer, tokens_per_batch: int) -> dict:
    """Greedy exact match of the decoded answer (stripped of surrounding spaces) against the code, by depth too."""
    length = len(dataset[0]["input_ids"])
    batch_size = max(1, tokens_per_batch // length)
    max_new_tokens = max(len(labels) for labels in dataset["labels"]) + 1
    predictions = []
    for start in range(0, len(dataset), batch_size):
        input_ids = torch.tensor(dataset[start : start + batch_size]["input_ids"], device=model.device)
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            num_beams=1,
            do_sample=False,
        )
        predictions += [text.strip() for text in tokenizer.batch_decode(output, skip_special_tokens=True)]
    codes = list(dataset["code"])
    return {
        "exact_match": load_metric("exact_match").compute(predictions=predictions, references=codes)["exact_match"],
        "exact_match_by_depth": exact_match_by_depth(predictions, codes, list(dataset["depth"])),
        "num_samples": len(dataset),
        "examples": [{"code": c, "prediction": p} for c, p in list(zip(codes, predictions, strict=True))[:3]],
    }


def guarded(metric: str, score, *score_args) -> dict:
    """`score(*score_args)`, or the error that stopped it where a model cannot run a length (a table of positions
    past its rows, out of memory) as `{metric: None, "error": ...}`; any other exception is a bug and raised."""
    try:
        return score(*score_args)
    except (ValueError, IndexError, torch.OutOfMemoryError) as error:  # a table past its rows; GPU memory
        return {metric: None, "error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
    except RuntimeError as error:  # the CPU allocator's out of memory
        if "memory" not in str(error):
            raise
        return {metric: None, "error": f"out of memory: {str(error).splitlines()[0][:200]}"}


def score_lengths(spec: dict, folder: Path, sets: dict, trained: int, metric: str, score, *score_args) -> dict:
    """`score(model, dataset, *score_args)` (a dict with `metric`) at each length of `sets` ({n: dataset}), the model in `folder` loaded
    with `spec`'s inference options (rope+yarn: factor n / trained; +logn: at the trained length)."""
    cells, model, loaded_with = {}, None, "unset"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for n, dataset in sets.items():
        rope = rope_parameters_for("yarn" if spec["yarn"] else None, n + 1, trained)
        if model is None or rope != loaded_with:  # reloaded only where the rope scaling changes with n
            model, loaded_with = load_model(folder, rope, trained if spec["logn"] else None).to(device), rope
        started = time.perf_counter()
        cells[str(n)] = {
            **guarded(metric, score, model, dataset, *score_args),
            "seconds": round(time.perf_counter() - started, 1),
        }
        logger.warning(f"{spec['name']} @ {n}: {metric} {cells[str(n)][metric]}")
    return cells


def run_realtext(args: RealTextArguments, command: str | None = None) -> dict:
    output_dir, work_dir = Path(args.output_dir), Path(args.work_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "command": command or invocation_command(),
        "protocol": asdict(args),
        "environment": environment(),
        "defaults": config_defaults(),
        "rows": [],
    }
    previous = previous_results(output_dir / RESULTS_JSON, args.resume)
    if previous is not None:
        needle_free = not any("needle" in row for row in previous["rows"])  # they gain B's fields now
        selection = SELECTION_FIELDS + (
            tuple(f for f in asdict(args) if f.startswith("needle_")) if needle_free else ()
        )
        made = previous["protocol"]  # what results made before a field had: B's rows started from A's models, ...
        predated = {"needle_learning_rate": made["learning_rate"], "needle_start": "trained", "config_overrides": None}
        check_same_protocol(asdict(args), made, output_dir / RESULTS_JSON, selection, predated)
        encodings = {row["model"] for row in previous["rows"] if row["model"] not in REFERENCES}
        check_same_defaults(previous.get("defaults"), encodings, output_dir / RESULTS_JSON)
        results["rows"] = previous["rows"]
        results["commands"] = previous.get("commands", [previous["command"]]) + [results["command"]]
        results["previous_environments"] = previous.get("previous_environments", []) + [previous["environment"]]
    kept = {row["name"]: row for row in results["rows"]}
    tokenizer, train_docs, test_docs = corpus_documents(args)
    check_room(args, tokenizer, test_docs)
    windows = target_windows(test_docs, max(args.lengths), args.target_length, args.num_eval_windows, args.seed + 2)
    eval_sets = {
        n: context_target_dataset(test_docs, windows, n, args.target_length, tokenizer.eos_token_id)
        for n in (args.lengths if args.steps else [])
    }
    needle_sets = {
        n: needle_haystack_dataset(test_docs, tokenizer, [n] * args.needle_samples, args.seed + 5, stratify_depth=True)
        for n in (args.needle_lengths if args.needle_steps else [])
    }
    trained = args.train_context + 1
    training = {
        row["model"]: row["training"] for row in results["rows"] if "training" in row
    }  # kept rows' models are reused, not retrained
    needle_training = {row["model"]: row["needle"]["training"] for row in results["rows"] if "needle" in row}
    rows_in_order = plan(args)
    order = {spec["name"]: i for i, spec in enumerate(rows_in_order)}  # resumed rows go back in protocol order
    for spec in rows_in_order:
        row = kept.get(spec["name"])
        if row is not None and (not args.needle_steps or "needle" in row):
            continue
        folder = work_dir / spec["model"]
        if row is None:
            row = dict(spec)
            if args.steps:
                if spec["model"] not in training:
                    logger.warning(f"training {spec['model']} ({args.steps} steps)")
                    training[spec["model"]] = train_row(args, spec["model"], tokenizer, train_docs, folder)
                row["training"] = training[spec["model"]]
                row["eval"] = score_lengths(
                    spec, folder, eval_sets, trained, "perplexity", perplexity, args.eval_tokens_per_batch
                )
            results["rows"].append(row)
        if args.needle_steps:
            needle_folder = work_dir / "needle" / spec["model"]
            if spec["model"] not in needle_training:
                logger.warning(f"needle training {spec['model']} ({args.needle_steps} steps)")
                needle_training[spec["model"]] = train_needle(
                    args, spec["model"], folder, tokenizer, train_docs, needle_folder
                )
            row["needle"] = {
                "training": needle_training[spec["model"]],
                "eval": score_lengths(
                    spec,
                    needle_folder,
                    needle_sets,
                    trained,
                    "exact_match",
                    needle_exact_match,
                    tokenizer,
                    args.eval_tokens_per_batch,
                ),
            }
        results["rows"].sort(key=lambda r: order.get(r["name"], len(order)))
        write_outputs(results, output_dir)
    write_outputs(results, output_dir)
    return results


# What selects the rows, says where they go or how fast they are scored; every other field decides how a row is
# made, so `--resume` keeps rows only when those match this command's
SELECTION_FIELDS = (
    "encodings", "references", "logn", "yarn", "eval_tokens_per_batch", "output_dir", "work_dir", "resume",
)  # fmt: skip


def check_room(args: RealTextArguments, tokenizer, test_docs) -> None:
    """Before anything is trained: the held-out books hold the longest context asked for (`lengths`: plus the target;
    `needle_lengths`), and benchmark B's sources (training: from `min_train_context`; evaluation: `needle_lengths`)
    hold a needle and its question with this tokenizer; otherwise a ValueError names the field."""
    longest = max(len(ids) for ids in test_docs)
    asked = [("lengths", max(args.lengths) + args.target_length, " (the context and its target)")] if args.steps else []
    asked += [("needle_lengths", max(args.needle_lengths), "")] if args.needle_steps else []
    for name, n, what in asked:
        if n > longest:
            raise ValueError(
                f"`{name}` asks for {n} tokens{what} of a held-out book, and the longest of {args.corpus} has "
                f"{longest}: give shorter `{name}`, or a corpus with longer held-out books."
            )
    if not args.needle_steps:
        return
    shortest = needle_min_length(tokenizer)
    for name, n in (("min_train_context", args.min_train_context), ("needle_lengths", min(args.needle_lengths))):
        if n < shortest:
            raise ValueError(
                f"`{name}`={n}: benchmark B's needle and question take up to {shortest} tokens with this tokenizer "
                f"(vocab_size {args.vocab_size}); give at least {shortest}, or --needle_steps 0 for no benchmark B."
            )


def write_outputs(results: dict, output_dir: Path) -> None:
    (output_dir / RESULTS_JSON).write_text(json.dumps(results, indent=1) + "\n")
    (output_dir / RESULTS_TABLE).write_text(markdown(results))
    plot(results, output_dir)


def markdown(results: dict) -> str:
    p, rows = results["protocol"], [row for row in results["rows"] if "eval" in row]
    lengths = [str(n) for n in p["lengths"]]
    title = (
        f"Perplexity of the next {p['target_length']} tokens against context length"
        if rows
        else "A needle in a real haystack"
    )
    overrides = (
        f" LongCtxConfig overrides on the hf_longctx rows: `{p['config_overrides']}`."
        if p.get("config_overrides")
        else ""
    )
    lines = [
        f"# {title} (trained at {p['min_train_context']}-{p['train_context']} tokens)",
        "",
        "Command: " + "; then ".join(f"`{c}`" for c in results.get("commands", [results["command"]])),
        "",
        f"Corpus `{p['corpus']}` (held-out books); d_model {p['d_model']}, {p['layers']}+{p['layers']} layers, BPE of "
        f"{p['vocab_size']} tokens, batch {p['batch_size']}.{overrides} Environment: {results['environment']}.",
        "",
    ]
    if rows:
        lines += [
            f"{p['steps']} steps; {p['num_eval_windows']} target windows scored at every length. A cell in brackets is "
            "the ratio to the first length; `-` with a note: the model could not run it.",
            "",
        ]

    def perplexity_cell(row, n):
        first, scores = row["eval"].get(lengths[0], {}).get("perplexity"), row["eval"][n]
        ratio = f" ({scores['perplexity'] / first:.2f})" if first and n != lengths[0] else ""
        return f"{scores['perplexity']:.2f}{ratio}"

    if rows:
        lines += length_table(rows, lengths, p["train_context"], lambda row: row["eval"], "perplexity", perplexity_cell)
    if any("needle" in row for row in results["rows"]):
        lines += needle_markdown(results)
    return "\n".join(lines) + "\n"


def length_table(rows: list[dict], lengths: list[str], trained: int, cells_of, metric: str, cell) -> list[str]:
    """A markdown table, a row per model and a column per length (`n (x)`: the multiple of `trained`): `cell(row, n)`
    where `cells_of(row)[n]` has a `metric`, else `-` and the cell's error in a note under the table."""
    lines = [
        "| model | " + " | ".join(f"{n} ({int(n) / trained:g}x)" for n in lengths) + " |",
        "|---|" + "---:|" * len(lengths),
    ]
    notes = []
    for row in rows:
        cells = []
        for n in lengths:
            scores = cells_of(row).get(n, {})
            cells.append("-" if scores.get(metric) is None else cell(row, n))
            if scores.get(metric) is None and scores.get("error"):
                notes.append(f"{row['name']} at {n}: {scores['error']}")
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return lines + ([""] + [f"- {note}" for note in notes] if notes else [])


def needle_markdown(results: dict) -> list[str]:
    """Benchmark B's lines: exact match per row and length, then by depth for the best row (`best_needle_row`)."""
    p, rows = results["protocol"], [row for row in results["rows"] if "needle" in row]
    lengths = [str(n) for n in p["needle_lengths"]]
    start = (
        "A fresh model of each row's architecture, trained"
        if p.get("needle_start", "trained") == "scratch"
        else "Each row's model above, then"
    )
    lines = [
        "",
        f"## A needle in a real haystack: greedy exact match (trained at {p['min_train_context']}-"
        f"{p['train_context']} tokens)",
        "",
        f"{start} {p['needle_steps']} steps on needles only (peak lr "
        f"{p.get('needle_learning_rate', p['learning_rate']):g}); {p['needle_samples']} held-out "
        f"passages per length, the needle at a random depth ({DEPTH_BINS} bins of equal share).",
        "",
    ]
    lines += length_table(
        rows, lengths, p["train_context"], lambda row: row["needle"]["eval"], "exact_match",
        lambda row, n: f"{row['needle']['eval'][n]['exact_match']:.2f}",
    )  # fmt: skip
    best = best_needle_row(results)
    lines += [
        "",
        f"By needle depth, best row past the trained length ({best['name']}):",
        "",
        "| length | " + " | ".join(depth_bin_labels()) + " |",
        "|---:|" + "---:|" * DEPTH_BINS,
    ]
    for n, scores in best["needle"]["eval"].items():
        bins = scores.get("exact_match_by_depth") or [None] * DEPTH_BINS
        lines.append(f"| {n} | " + " | ".join("-" if x is None else f"{x:.2f}" for x in bins) + " |")
    return lines


def best_needle_row(results: dict) -> dict:
    """The row with benchmark B's highest mean exact match past the trained context (ties: the first)."""

    def score(row):
        cells = row["needle"]["eval"].items()
        long = [s.get("exact_match") or 0.0 for n, s in cells if int(n) > results["protocol"]["train_context"]]
        return sum(long) / len(long) if long else 0.0

    return max((row for row in results["rows"] if "needle" in row), key=score)


def plot(results: dict, output_dir: Path) -> None:
    """`PLOT` (perplexity against length, where a row has benchmark A's scores) and `NEEDLE_PLOT` (the best needle row
    by depth and length, where a row has benchmark B's) in `output_dir`."""
    if any("needle" in row for row in results["rows"]):
        best = best_needle_row(results)
        depth = [
            (n, s["exact_match_by_depth"]) for n, s in best["needle"]["eval"].items() if s.get("exact_match_by_depth")
        ]
        if depth:
            depth_heatmap(depth, f"needle in a real haystack: {best['name']}", output_dir / NEEDLE_PLOT)
    rows = [row for row in results["rows"] if "eval" in row]
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 4.0), dpi=100)
    colours = {model: plt.cm.tab10(i % 10) for i, model in enumerate(dict.fromkeys(r["model"] for r in rows))}
    for row in rows:  # one colour per trained model; its inference options by line style
        points = [(int(n), s["perplexity"]) for n, s in row["eval"].items() if s.get("perplexity") is not None]
        if points:
            style = "-." if row["logn"] else ("--" if row["yarn"] else "-")
            ax.plot(
                *zip(*points, strict=True), style, color=colours[row["model"]], marker="o", markersize=3,
                label=row["name"],
            )  # fmt: skip
    ax.axvline(results["protocol"]["train_context"], color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context tokens before the target; grey line: longest training context")
    ax.set_ylabel(f"perplexity of the next {results['protocol']['target_length']} tokens")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the data, never over it
    fig.tight_layout()
    fig.savefig(output_dir / PLOT)
    plt.close(fig)


__all__ = ["RealTextArguments", "run_realtext", "plan", "markdown", "best_needle_row", "quick_argv", "QUICK_FLAGS"]

"""Length-extrapolation benchmark: train each position encoding short, measure greedy exact match long.

Protocol (ARCHITECTURE.md, "How results are measured"): the same tiny model (`training.trainer.ModelArguments`
defaults: d_model 64, 2+2 layers, 4 heads) is trained with `training.trainer.train` on passkey retrieval at 16-64 source
tokens for `steps` steps, checking its in-distribution exact match every `eval_every` steps on `num_eval`
held-out examples; the first step at >= `target_accuracy` is reported, so a short budget is visible instead of
masquerading as a failure to extrapolate. Each trained folder is then evaluated at every length of
`lengths` (greedy, `num_eval` examples per length, exact match also binned by needle depth). By default every
variant trains the whole budget and `solved_at` reports the first check at >= `target_accuracy`
(`stop_at_target` stops there instead: cheaper, but a model stopped at 99% in distribution extrapolates worse).

Variants (one row each):
    <encoding>               trained and evaluated as is;
    rope+<linear|dynamic|yarn> the trained rope folder re-loaded with `rope_parameters` scaled at inference, no
                             retraining (`from_pretrained(folder, rope_parameters=...)` rebuilds RotaryPositions from
                             the config). linear / yarn use factor = length / train_max_len at each evaluation
                             length past the trained one; dynamic NTK grows its base by itself (fixed factor);
    <encoding>+randomized    trained with randomized positions (Ruoss et al. 2023) below max(lengths);
    <variant>@<task>         the same on a second task (kv_recall / copy) for a subset of encodings.

`run_benchmark(args)` writes, under `args.output_dir`: `results.json` (protocol, command, every row with steps
and per-length/per-depth exact match), `results.md` (the table), `accuracy_vs_length*.png` (one line per variant)
and `depth_heatmap.png` (depth x length for the best variant). The JSON is rewritten after every variant, and
`--resume` skips variants already in it, so an interrupted run loses at most one variant.
"""

import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSeq2SeqLM, Seq2SeqTrainingArguments, TrainerCallback
from transformers.utils import logging

from ..data.tasks import make_task, source_lengths
from ..positions import POSITION_ENCODINGS, LearnedPositions, encoding_names
from ..training.trainer import (
    RESULTS_JSON,
    RESULTS_TABLE,
    DataArguments,
    ModelArguments,
    check_learning_rate,
    exact_match_by_depth,
    load_metric,
    train,
)
from .environment import check_same_defaults, check_same_protocol, config_defaults, environment, previous_results
from .report import markdown, plot

logger = logging.get_logger(__name__)

ROPE_SCALINGS = ("linear", "dynamic", "yarn")
DYNAMIC_FACTOR = 1.0  # NTK-aware base growth keyed on the current length: base * (L / trained)^(d / (d - 2))


@dataclass
class BenchArguments:
    """What to train and evaluate; shrink `encodings`, `steps`, `num_eval`, `lengths` for a smoke run."""

    encodings: list[str] = field(
        default_factory=lambda: list(encoding_names(encoder_allowed=True)),
        metadata={"help": "Encodings trained on passkey (each a row; default: every registered one)."},
    )
    rope_scalings: list[str] = field(
        default_factory=lambda: list(ROPE_SCALINGS),
        metadata={"help": "Scalings applied at inference to the trained rope model (rows rope+<scaling>)."},
    )
    logn: list[str] = field(
        default_factory=lambda: ["alibi", "relative", "rope"],
        metadata={
            "help": "Encodings also evaluated with log-length scaling of the cross-attention at inference (rows "
            "<enc>+logn, and rope+<scaling>+logn): `cross_attention_logn_length` = train_max_len on the trained model."
        },
    )
    randomized: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Encodings also trained with randomized positions below max(lengths) (rows <enc>+randomized)."
        },
    )
    second_task: str | None = field(
        default="kv_recall", metadata={"help": "Second task (kv_recall or copy); None to skip."}
    )
    second_task_encodings: list[str] = field(
        default_factory=lambda: ["alibi", "relative"], metadata={"help": "Encodings trained on the second task."}
    )
    lengths: list[int] = field(
        default_factory=lambda: [32, 64, 128, 256, 512, 1024, 2048], metadata={"help": "Evaluation source lengths."}
    )
    second_task_lengths: list[int] | None = field(
        default=None, metadata={"help": "Evaluation lengths of the second task; defaults to `lengths`."}
    )
    num_eval: int = field(default=200, metadata={"help": "Examples per evaluation length (and in distribution)."})
    steps: int = field(default=4000, metadata={"help": "Step budget per training run."})
    target_accuracy: float = field(
        default=0.99, metadata={"help": "In-distribution exact match whose first step is reported (`solved_at`)."}
    )
    stop_at_target: bool = field(
        default=False,
        metadata={
            "help": "Stop training once `target_accuracy` is reached. Off by default: every variant gets the full "
            "budget (stopping at 99%% in distribution left ALiBi at 0.72 at 512 tokens instead of ~1.0)."
        },
    )
    eval_every: int = field(default=250, metadata={"help": "Steps between in-distribution checks."})
    train_min_len: int = field(default=16, metadata={"help": "Shortest training source."})
    train_max_len: int = field(default=64, metadata={"help": "Longest training source."})
    num_train: int = field(default=50000, metadata={"help": "Training examples (epochs repeat them)."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate (cosine, 200 warm-up steps)."})
    batch_size: int = field(default=32, metadata={"help": "Training and evaluation batch size."})
    d_model: int = field(default=64, metadata={"help": "Model width (same for every variant)."})
    layers: int = field(default=2, metadata={"help": "Encoder and decoder layers each."})
    relative_attention_max_distance: int = field(
        default=128, metadata={"help": "T5 bucket range of the `relative` rows (128: T5's value)."}
    )
    seed: int = field(default=42, metadata={"help": "Training seed (model init and data order)."})
    seeds: list[int] = field(
        default_factory=list,
        metadata={
            "help": "Train every variant once per seed (rows '<variant> seed=<n>') and add a table of the mean and "
            "the worst seed per variant; empty: `seed` alone."
        },
    )
    output_dir: str = field(
        default="runs/extrapolation-results",
        metadata={"help": "JSON, markdown and PNG go here (a folder that holds results needs --resume)."},
    )
    work_dir: str = field(default="runs/extrapolation", metadata={"help": "Trained model folders (not committed)."})
    resume: bool = field(default=False, metadata={"help": "Skip variants already in output_dir/results.json."})
    plots: bool = field(
        default=True, metadata={"help": "Write the PNG plots (needs matplotlib: pip install .[bench])."}
    )


class StopAtAccuracy(TrainerCallback):
    """Remembers the first step whose in-distribution exact match reaches `target`; with `stop`, ends training there."""

    def __init__(self, target: float, stop: bool = True):
        self.target, self.stop, self.solved_at, self.history = target, stop, None, []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        score = (metrics or {}).get("eval_exact_match")
        if score is None:
            return
        self.history.append([state.global_step, score])
        if score >= self.target and self.solved_at is None:
            self.solved_at = state.global_step
            control.should_training_stop = self.stop


def recipe_training_args(
    folder: Path, steps: int, learning_rate: float, warmup_steps: int, batch_size: int, eval_every: int, seed: int
) -> Seq2SeqTrainingArguments:
    """The benchmarks' recipe: AdamW, cosine schedule after a linear warm-up, weight decay 0.01, batches of similar
    lengths, an in-distribution check (greedy generation) every `eval_every` steps, no checkpoints."""
    return Seq2SeqTrainingArguments(
        output_dir=str(folder),
        max_steps=steps,
        learning_rate=learning_rate,
        warmup_steps=warmup_steps,
        lr_scheduler_type="cosine",
        weight_decay=0.01,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        train_sampling_strategy="group_by_length",
        predict_with_generate=True,
        eval_strategy="steps",
        eval_steps=eval_every,
        logging_steps=max(1, eval_every),
        save_strategy="no",
        report_to="none",
        seed=seed,
        disable_tqdm=True,
    )


def train_variant(args: BenchArguments, task: str, encoding: str, randomized: bool, seed: int, folder: Path) -> dict:
    """Train one model with `training.trainer.train`; returns steps, the solve step and the in-distribution history."""
    model_args = ModelArguments(
        d_model=args.d_model,
        encoder_layers=args.layers,
        decoder_layers=args.layers,
        position_embedding_type=encoding,
        # a table (`learned`) gets rows up to the longest evaluation (past the training lengths they stay untrained);
        # the others keep build_model's trained length, where rope's dynamic NTK starts to scale (HF's meaning)
        max_position_embeddings=max(args.lengths) if issubclass(POSITION_ENCODINGS[encoding], LearnedPositions) else None,
        randomized_positions_max_length=max(args.lengths) if randomized else None,
        relative_attention_max_distance=args.relative_attention_max_distance,
        cross_attention_logn_length="off",  # the plain encoding; rows +logn switch it on at inference
    )
    data_args = DataArguments(
        task=task,
        train_min_len=args.train_min_len,
        train_max_len=args.train_max_len,
        eval_lengths=[args.train_max_len],  # the long lengths are evaluated here, with rescaling where asked
        num_train=args.num_train,
        num_eval=args.num_eval,
    )
    training_args = recipe_training_args(
        folder, args.steps, args.learning_rate, min(200, args.steps // 10), args.batch_size, args.eval_every, seed
    )
    stopper = StopAtAccuracy(args.target_accuracy, stop=args.stop_at_target)
    start = time.perf_counter()
    results = train(model_args, data_args, training_args, callbacks=[stopper])
    return {
        "steps": results["train"]["global_step"],
        "solved_at": stopper.solved_at,  # None: the budget ran out below target_accuracy
        "in_distribution_history": stopper.history,
        "in_distribution_exact_match": results["eval"][str(args.train_max_len)]["exact_match"],
        "train_seconds": round(time.perf_counter() - start, 1),
    }


def rope_parameters_for(scaling: str | None, length: int, trained: int) -> dict | None:
    """`rope_parameters` for evaluating at `length` (None: the trained, unscaled rope)."""
    if scaling is None or length <= trained:
        return None
    if scaling == "dynamic":  # HF's dynamic NTK reads the trained length from `max_position_embeddings`
        return {"rope_type": "dynamic", "factor": DYNAMIC_FACTOR}
    if scaling == "yarn":
        return {"rope_type": "yarn", "factor": length / trained, "original_max_position_embeddings": trained}
    return {"rope_type": scaling, "factor": length / trained}


def load_model(folder: Path, rope_parameters: dict | None, logn_length: int | None = None):
    kwargs = {} if logn_length is None else {"cross_attention_logn_length": logn_length}
    if rope_parameters is not None:
        # merged over the saved dict: a `rope_parameters` kwarg replaces the config's whole dict after __post_init__,
        # so without the saved `rope_theta` the rotary module fails (TypeError: None ** Tensor)
        saved = AutoConfig.from_pretrained(folder).rope_parameters
        rope_parameters = {**saved, **rope_parameters}
        kwargs["rope_parameters"] = rope_parameters
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, **kwargs).eval()
    if rope_parameters is not None:  # the position modules are built from the config; make sure it took
        encoder_rope = model.get_encoder().position
        if getattr(encoder_rope, "rope_type", None) != rope_parameters["rope_type"]:
            raise RuntimeError(f"rope_parameters={rope_parameters} did not reach the encoder's rotary module.")
    return model


@torch.no_grad()
def exact_match_at_length(
    model, tokenizer, task: str, length: int, num_eval: int, seed: int, batch_size: int, num_records: int | None = None
) -> dict:
    """Greedy exact match on `num_eval` examples of one source length (equal lengths: no padding), by depth too."""
    raw = make_task(task, num_eval, length, length, seed, num_records=num_records)
    max_length = max(len(t.split()) for t in raw["target"]) + 2  # start token + target + EOS
    batch_size = max(1, min(batch_size, (batch_size * 512) // length))  # keep long batches small
    predictions = []
    start = time.perf_counter()
    for i in range(0, len(raw), batch_size):
        encoded = tokenizer(raw["source"][i : i + batch_size], return_tensors="pt")
        generated = model.generate(**encoded, max_length=max_length, do_sample=False, num_beams=1)
        predictions += tokenizer.batch_decode(generated, skip_special_tokens=True)
    result = {
        **load_metric("exact_match").compute(predictions=predictions, references=list(raw["target"])),
        "num_samples": len(predictions),
        "seconds": round(time.perf_counter() - start, 1),
    }
    if min(raw["depth"]) >= 0:
        result["exact_match_by_depth"] = exact_match_by_depth(predictions, list(raw["target"]), raw["depth"])
    return result


def plan(args: BenchArguments) -> list[dict]:
    """The rows to produce, in order: each trained encoding, then its rope scalings, then the same with +logn."""
    rows = []
    for encoding in args.encodings:
        scalings = [None] + (list(args.rope_scalings) if encoding == "rope" else [])
        for logn in (False, True) if encoding in args.logn else (False,):
            for s in scalings:
                name = encoding + (f"+{s}" if s else "") + ("+logn" if logn else "")
                rows.append(
                    {"name": name, "task": "passkey", "encoding": encoding, "randomized": False, "scaling": s}
                    | ({"logn": True} if logn else {})
                )
    for encoding in args.randomized:
        rows.append(
            {
                "name": f"{encoding}+randomized",
                "task": "passkey",
                "encoding": encoding,
                "randomized": True,
                "scaling": None,
            }
        )
    if args.second_task:
        for encoding in args.second_task_encodings:
            rows.append(
                {
                    "name": f"{encoding}@{args.second_task}",
                    "task": args.second_task,
                    "encoding": encoding,
                    "randomized": False,
                    "scaling": None,
                }
            )
    if not args.seeds:
        return [{**row, "variant": row["name"], "seed": args.seed} for row in rows]
    return [
        {**row, "name": f"{row['name']} seed={seed}", "variant": row["name"], "seed": seed}
        for row in rows
        for seed in args.seeds
    ]


# What selects the rows (or where they go); every other field decides how a row is made, so `--resume` keeps rows
# only when they match this command's
SELECTION_FIELDS = (
    "encodings", "rope_scalings", "logn", "randomized", "second_task", "second_task_encodings", "seeds",
    "output_dir", "work_dir", "resume", "plots",
)  # fmt: skip


def check_rows_selected(args: BenchArguments) -> None:
    """A selection flag the user gave that picks no row is refused (its default may pick none: it was not given)."""
    defaults = BenchArguments()
    if args.steps < 1:
        raise ValueError(f"`steps`={args.steps}: every row trains; give a step budget of at least 1.")
    given = {name for name in ("logn", "rope_scalings", "second_task_encodings") if getattr(args, name) != getattr(defaults, name)}
    idle = [e for e in args.logn if e not in args.encodings] if "logn" in given else []
    if idle:
        raise ValueError(
            f"`logn` has {', '.join(idle)}, which `encodings` ({', '.join(args.encodings)}) does not train: the +logn "
            "rows are of the passkey rows. Add them to --encodings, or drop them from --logn."
        )
    if "rope_scalings" in given and args.rope_scalings and "rope" not in args.encodings:
        raise ValueError("`rope_scalings` rescale the rope row, and `encodings` has no rope: add rope, or drop them.")
    if args.second_task is None and ("second_task_encodings" in given or args.second_task_lengths is not None):
        raise ValueError(
            "`second_task_encodings` / `second_task_lengths` are for the second task, which is off (--second_task "
            "None): name a --second_task, or drop them."
        )
    if args.randomized and max(args.lengths) < args.train_max_len:  # the rows' bound is the longest length
        raise ValueError(
            f"`randomized` rows sample positions below the longest of `lengths` ({max(args.lengths)}), which is below "
            f"`train_max_len`={args.train_max_len}: add a length of at least {args.train_max_len}, or drop --randomized."
        )
    evaluated = [("passkey", "lengths", args.lengths)]
    if args.second_task is not None:
        flag = "second_task_lengths" if args.second_task_lengths is not None else "lengths"
        evaluated.append((args.second_task, flag, args.second_task_lengths or args.lengths))
    for task, flag, lengths in evaluated:
        needed = source_lengths(task)[0]
        short = [n for n in lengths if n < needed]
        if short:  # checked here, before any training, not as a "-" cell after it
            raise ValueError(
                f"`{flag}` has {', '.join(map(str, short))}, too short for {task} (a source needs at least {needed} "
                f"tokens): drop {'it' if len(short) == 1 else 'them'}, or give lengths of at least {needed}."
            )


def run_benchmark(args: BenchArguments, command: str | None = None) -> dict:
    """Train and evaluate every planned row; write JSON, markdown and plots after each; return the results."""
    for scaling in args.rope_scalings:
        if scaling not in ROPE_SCALINGS:
            raise ValueError(f"`rope_scalings` entry {scaling!r} is unknown; valid: {', '.join(ROPE_SCALINGS)}.")
    if args.second_task is not None and args.second_task not in ("kv_recall", "copy", "reverse", "passkey"):
        raise ValueError(f"`second_task`={args.second_task!r} is not a known task.")
    check_rows_selected(args)
    check_learning_rate(args.learning_rate, "`learning_rate`")
    output_dir, work_dir = Path(args.output_dir), Path(args.work_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = output_dir / RESULTS_JSON
    results = {
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "protocol": asdict(args),
        "environment": environment(),
        "defaults": config_defaults(),
        "rows": [],
    }
    previous = previous_results(json_path, args.resume)
    if previous is not None:
        check_same_protocol(asdict(args), previous["protocol"], json_path, SELECTION_FIELDS, asdict(BenchArguments()))
        check_same_defaults(previous.get("defaults"), {row["encoding"] for row in previous["rows"]}, json_path)
        results["rows"] = previous["rows"]
        # the rows kept were made by the earlier command(s); this one only adds the missing rows
        results["commands"] = previous.get("commands", [previous["command"]]) + [results["command"]]
        results["previous_environments"] = previous.get("previous_environments", []) + [previous["environment"]]
        results["wall_seconds"] = previous.get("wall_seconds", 0)
        results["notes"] = previous.get("notes", [])
    done = {row["name"] for row in results["rows"]}
    trained: dict[tuple, dict] = {}  # (task, encoding, randomized, seed) -> training summary, shared with rope scalings
    for row in results["rows"]:
        trained.setdefault(_training_key(row, args.seed), row["training"])

    started = time.perf_counter()
    for spec in plan(args):
        if spec["name"] in done:
            continue
        key = _training_key(spec, args.seed)
        folder = work_dir / (
            f"{spec['task']}-{spec['encoding']}{'-randomized' if spec['randomized'] else ''}"
            + (f"-seed{spec['seed']}" if args.seeds else "")
        )
        if key not in trained:
            logger.warning(f"training {spec['name']} (budget {args.steps} steps)")
            trained[key] = train_variant(args, spec["task"], spec["encoding"], spec["randomized"], spec["seed"], folder)
        lengths = args.lengths if spec["task"] == "passkey" else (args.second_task_lengths or args.lengths)
        row = {**spec, "training": trained[key], "eval": {}}
        from ..data.tokenization import build_tokenizer

        tokenizer = build_tokenizer()
        model, loaded_with = None, "unset"
        for i, length in enumerate(lengths):
            rope = rope_parameters_for(spec["scaling"], length, args.train_max_len)
            if model is None or rope != loaded_with:
                logn_length = args.train_max_len if spec.get("logn") else None
                model, loaded_with = load_model(folder, rope, logn_length), rope
                if model.config.cross_attention_logn_length != logn_length:
                    raise RuntimeError(f"cross_attention_logn_length={logn_length} did not reach the model config.")
            try:
                scores = exact_match_at_length(
                    model, tokenizer, spec["task"], length, args.num_eval, 10_000 + i, args.batch_size
                )
            except ValueError as error:  # e.g. `learned` past its table
                scores = {"exact_match": None, "error": str(error).splitlines()[0]}
            if rope is not None:
                scores["rope_parameters"] = rope
            row["eval"][str(length)] = scores
            logger.warning(f"{spec['name']} @ {length}: exact match {scores['exact_match']}")
        results["rows"].append(row)
        order = {spec["name"]: i for i, spec in enumerate(plan(args))}  # resumed rows back in protocol order
        results["rows"].sort(key=lambda r: order.get(r["name"], len(order)))
        results["wall_seconds"] = round(results.get("wall_seconds", 0) + time.perf_counter() - started, 1)
        started = time.perf_counter()
        write_outputs(results, output_dir, plots=args.plots)
    write_outputs(results, output_dir, plots=args.plots)
    return results


def write_outputs(results: dict, output_dir: Path, plots: bool = True) -> None:
    (output_dir / RESULTS_JSON).write_text(json.dumps(results, indent=1) + "\n")
    (output_dir / RESULTS_TABLE).write_text(markdown(results))
    if plots and results["rows"]:
        plot(results, output_dir)


def _training_key(row: dict, default_seed: int) -> tuple:
    """Rows with the same key share one trained model (the rope scalings reuse the rope model)."""
    return row["task"], row["encoding"], row["randomized"], row.get("seed", default_seed)


__all__ = ["BenchArguments", "StopAtAccuracy", "run_benchmark", "plan", "rope_parameters_for"]

"""Trunk ablation: which of T5's choices make a tiny encoder-decoder learn to match a query to its key.

Every row trains one model with `training.trainer.train` under one recipe (AdamW, cosine schedule with warm-up, batch,
lengths and steps from `AblationArguments`) on a task where several keys compete (`multikey` by default, or
`kv_recall`), checks in-distribution exact match every `eval_every` steps and stops at `target_accuracy`; the
row's result is the first step at the target (`solved_at`, None when the budget ran out) and the history.

A row is a variant (an entry of `VARIANTS`: LongCtxConfig fields set over the defaults, or an HF reference model)
at one learning rate and one seed, e.g. `t5trunk/alibi lr=0.002 seed=42`. Each row's summary is written to
`output_dir/rows/<row>.json` when it ends, and `results.md` is rebuilt from every file there, so two processes
(one per core) can share one `output_dir` and an interrupted sweep loses at most the rows in flight.
"""

import importlib.util
import json
import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import set_seed
from transformers.utils import logging

from ..conversion.convert import convert_model
from ..data.tokenization import build_tokenizer
from ..training.trainer import DataArguments, ModelArguments, build_model, check_learning_rate, train
from .environment import check_same_defaults, check_same_protocol, config_defaults, environment
from .extrapolation import StopAtAccuracy, exact_match_at_length, load_model, recipe_training_args

logger = logging.get_logger(__name__)

# T5's trunk as LongCtxConfig fields (what `conversion/convert.py` sets for a T5 v1 checkpoint, with T5's initialisation):
# RMSNorm, no biases, no 1/sqrt(head_dim) on the scores, ReLU, output scaled by d_model**-0.5 before the tied head;
# with another encoding than `relative`, that encoding in place of T5's learned bias (no `relative_bias`).
T5_TRUNK = {
    "initializer": "fan_in",
    "decoder_output_scale": "d_model**-0.5",
    "norm_type": "rmsnorm",
    "layer_norm_eps": 1e-6,
    "attention_scale": 1.0,
    "attention_bias": False,
    "ffn_bias": False,
    "activation_function": "relu",
    "relative_bias": False,
}
T5_INIT = {"initializer": "fan_in", "decoder_output_scale": "d_model**-0.5"}  # init and output scale go together
PLAIN = {"relative_bias": False}  # the default trunk as it was before `relative_bias`: the encoding alone

# name -> {"reference": HF family} or {"overrides": LongCtxConfig fields, "encoding": position_embedding_type}
VARIANTS: dict[str, dict] = {"t5": {"reference": "t5"}, "bart": {"reference": "bart"}, "marian": {"reference": "marian"}}
# HF T5 exactly as the `t5` row builds it (same seed, so the same initial weights), converted into hf_longctx before
# training: T5's numbers in hf_longctx's code. Against `t5` it tests the code; against `t5trunk/relative` (the same
# architecture from hf_longctx's own initialisation) it tests the initial draws.
VARIANTS["t5convert/relative"] = {"reference": "t5", "convert": True}
for _encoding in ("alibi", "relative", "rope"):
    VARIANTS[f"default/{_encoding}"] = {"encoding": _encoding, "overrides": {}}
    if _encoding == "alibi":  # relative is the bias itself; rope has no `relative_bias` by default
        VARIANTS[f"plain/{_encoding}"] = {"encoding": _encoding, "overrides": PLAIN}
    # T5 has no encoder convolution (relative's and rope's defaults have one)
    VARIANTS[f"t5trunk/{_encoding}"] = {"encoding": _encoding, "overrides": {**T5_TRUNK, "encoder_conv_kernel": 0}}
VARIANTS["t5trunk+relbias/alibi"] = {"encoding": "alibi", "overrides": {**T5_TRUNK, "relative_bias": True}}
# relative's trunk before T5's initialisation became its default: `relative0` (rows made then as `default/relative`
# carry this name now, `default+conv0/relative` (no convolution, relative's default before that) is
# `relative0+conv0/relative`, and rows made as `default+init/relative` are `default/relative`:
# results/trunk-ablation/README.md; each row's JSON says so in `relabelled`)
RELATIVE0 = {"initializer": "normal"}
VARIANTS["relative0/relative"] = {"encoding": "relative", "overrides": RELATIVE0}
VARIANTS["relative0+conv0/relative"] = {"encoding": "relative", "overrides": {**RELATIVE0, "encoder_conv_kernel": 0}}
VARIANTS["relative0+align/relative"] = {"encoding": "relative", "overrides": {**RELATIVE0, "cross_attention_alignment": True}}

# RoPE's trunk before T5's initialisation and the encoder convolution became its default: `rope0+<factors>/rope`.
# The rows made then as `default+<factors>/rope` carry these names now (`ROPE0_NAMES`; results/trunk-ablation/README.md).
ROPE0 = {"initializer": "normal", "encoder_conv_kernel": 0}
_THETA_1M = {"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}
_ROPE0_FACTORS = {
    "": {},
    # a base of 1e6 leaves more of the head's dimensions all but unrotated over the training lengths (content
    # matching across the input), with and without `relative_bias`
    "theta1m": _THETA_1M,
    "relbias+theta1m": {"relative_bias": True, **_THETA_1M},
    "relbias": {"relative_bias": True},
    "conv4": {"encoder_conv_kernel": 4},
    "relbias+conv4": {"relative_bias": True, "encoder_conv_kernel": 4},
    "conv8": {"encoder_conv_kernel": 8},
    "relbias+init": {"relative_bias": True, **T5_INIT},
    # RoPE learns even the value of *a* record slowly at lr 1e-3 (0.28 at step 1000 where ALiBi has 0.53): its
    # positions come only from q.k, which start near 0 (N(0, 0.02) weights, 1/sqrt(d) scores). With the encoder
    # convolution, one factor that makes q.k large from the start (T5's init, no score scale) or lets the decoder
    # count by its mask alone; T5's init alone (`init+conv4` is RoPE's default now: `default/rope`)
    "scale1+conv4": {"attention_scale": 1.0, "encoder_conv_kernel": 4},
    "decnone+conv4": {"decoder_position_embedding_type": "none", "encoder_conv_kernel": 4},
    "init": T5_INIT,
}
# partial rotary (GPT-NeoX, Phi): only the first half / quarter of each head's dimensions rotate, the rest match by
# content alone at any distance; with and without the encoder convolution, and with T5's buckets on the scores
for _percent in (50, 25):
    _partial = {"rope_parameters": {"rope_type": "default", "partial_rotary_factor": _percent / 100}}
    _ROPE0_FACTORS[f"partial{_percent}"] = _partial
    _ROPE0_FACTORS[f"partial{_percent}+conv4"] = {**_partial, "encoder_conv_kernel": 4}
    _ROPE0_FACTORS[f"partial{_percent}+relbias+conv4"] = {**_partial, "relative_bias": True, "encoder_conv_kernel": 4}
for _name, _fields in _ROPE0_FACTORS.items():
    VARIANTS[f"rope0{'+' if _name else ''}{_name}/rope"] = {"encoding": "rope", "overrides": {**ROPE0, **_fields}}
# the names rows were made under before (`plain` was the same trunk as `default` for rope: no `relative_bias`)
ROPE0_NAMES = {
    "default/rope": "rope0/rope",
    "plain/rope": "rope0/rope",
    "plain+theta1m/rope": "rope0+theta1m/rope",
    "default+theta1m/rope": "rope0+relbias+theta1m/rope",
    "plain+conv4/rope": "rope0+conv4/rope",
    "default+init+conv4/rope": "default/rope",  # the same model: T5's init and the convolution over RoPE's trunk then
    **{f"default+{name}/rope": f"rope0+{name}/rope" for name in _ROPE0_FACTORS if name and "theta" not in name},
}
for _encoding in ("relative", "rope"):
    VARIANTS[f"default+align/{_encoding}"] = {"encoding": _encoding, "overrides": {"cross_attention_alignment": True}}
# an encoder that attends within 16 tokens (`encoder_local_radius`), below the training sources (24-64): the matching
# of the query against the records is left to the cross-attention, which sees any length as it saw the trained ones
for _encoding in ("alibi", "relative", "rope"):
    VARIANTS[f"default+local16/{_encoding}"] = {"encoding": _encoding, "overrides": {"encoder_local_radius": 16}}
for _radius in (24, 32):  # the shortest training source, half the longest
    VARIANTS[f"default+local{_radius}/alibi"] = {"encoding": "alibi", "overrides": {"encoder_local_radius": _radius}}
# one factor at a time, from the plain trunk (and the default, with `relative_bias`) towards T5's (alibi), and from
# T5's trunk back to the default
for _name, _fields in {
    "init": T5_INIT,
    "rmsnorm": {"norm_type": "rmsnorm", "layer_norm_eps": 1e-6},
    "scale1": {"attention_scale": 1.0},
    "nobias": {"attention_bias": False, "ffn_bias": False},
    "relu": {"activation_function": "relu"},
    "exactalibi": {"alibi_max_penalty": None},  # ALiBi's penalty at every distance (no 60-penalty window)
    "decnone": {"decoder_position_embedding_type": "none"},  # the decoder's order from its causal mask alone
    "conv4": {"encoder_conv_kernel": 4},
    "align": {"cross_attention_alignment": True},  # positions in the cross-attention (copy, reverse)
}.items():
    VARIANTS[f"plain+{_name}/alibi"] = {"encoding": "alibi", "overrides": {**PLAIN, **_fields}}
    VARIANTS[f"default+{_name}/alibi"] = {"encoding": "alibi", "overrides": _fields}
    if set(_fields) <= set(T5_TRUNK):  # a choice of T5's trunk: also the trunk without it
        VARIANTS[f"t5trunk-{_name}/alibi"] = {
            "encoding": "alibi",
            "overrides": {k: v for k, v in T5_TRUNK.items() if k not in _fields},
        }


TABLES = ("bart", "marian")  # references whose positions are a table of `max_position_embeddings` rows
# competing keys, the one-needle reference point, and outputs as long as the source (`cross_attention_alignment`)
ABLATION_TASKS = ("multikey", "kv_recall", "passkey", "copy", "reverse")


@dataclass
class AblationArguments:
    """The recipe (the same for every row) and which rows to run."""

    variants: list[str] = field(
        default_factory=lambda: ["t5", "default/alibi", "t5trunk/alibi"],
        metadata={"help": f"Rows to train, from: {', '.join(VARIANTS)}."},
    )
    learning_rates: list[float] = field(default_factory=lambda: [2e-3], metadata={"help": "AdamW peak lr per row."})
    seeds: list[int] = field(default_factory=lambda: [42], metadata={"help": "Training seeds (init and data order)."})
    task: str = field(default="multikey", metadata={"help": "multikey, kv_recall or passkey (one needle)."})
    num_records: int | None = field(default=None, metadata={"help": "Records per source of multikey (default 2)."})
    steps: int = field(default=4000, metadata={"help": "Step budget per row."})
    eval_every: int = field(default=250, metadata={"help": "Steps between in-distribution checks."})
    target_accuracy: float = field(default=0.99, metadata={"help": "In-distribution exact match that ends a row."})
    stop_at_target: bool = field(
        default=True,
        metadata={
            "help": "End a row at `target_accuracy` (its `solved_at`). --stop_at_target false trains the whole budget, "
            "for rows evaluated past the training length: a model stopped at 0.99 is the least converged one."
        },
    )
    batch_size: int = field(default=64, metadata={"help": "Training batch size."})
    warmup_steps: int = field(default=200, metadata={"help": "Linear warm-up steps."})
    train_min_len: int = field(default=24, metadata={"help": "Shortest training source."})
    train_max_len: int = field(default=64, metadata={"help": "Longest training source."})
    num_eval: int = field(default=200, metadata={"help": "In-distribution examples per check."})
    d_model: int = field(default=64, metadata={"help": "Model width."})
    layers: int = field(default=2, metadata={"help": "Encoder and decoder layers each."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads."})
    d_ff: int = field(default=256, metadata={"help": "Feed-forward width."})
    lengths: list[int] = field(
        default_factory=list,
        metadata={
            "help": "Source lengths each row's trained model is also evaluated at (greedy exact match, `num_eval` "
            "examples each), e.g. 128 256 512 1024 2048; hf_longctx rows once as trained and once with log-length "
            "cross-attention scaling (`cross_attention_logn_length` = train_max_len). Rows already in rows/ get the "
            "lengths they lack, from their model folder in `work_dir`."
        },
    )
    output_dir: str = field(default="results/trunk-ablation", metadata={"help": "rows/*.json and results.md."})
    work_dir: str = field(default="runs/trunk-ablation", metadata={"help": "Trained model folders (not committed)."})

    def __post_init__(self):
        for learning_rate in self.learning_rates:
            check_learning_rate(learning_rate, "`learning_rates`")
        if any(n <= self.train_max_len for n in self.lengths):
            raise ValueError(f"`lengths` are the extrapolation lengths: each must exceed train_max_len={self.train_max_len}.")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"`variants`: unknown {', '.join(unknown)}; valid: {', '.join(VARIANTS)}.")
        if self.task not in ABLATION_TASKS:
            raise ValueError(
                f"`task`={self.task!r} is not an ablation task; use one of {', '.join(ABLATION_TASKS)}."
            )


def row_name(variant: str, learning_rate: float, seed: int) -> str:
    return f"{variant} lr={learning_rate:g} seed={seed}"


def _file_name(row: str) -> str:
    """The row's name as a file or folder name (its run folder and its rows/*.json)."""
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", row)


def model_arguments(args: AblationArguments, variant: str) -> ModelArguments:
    spec = VARIANTS[variant]
    overrides = {
        k: args.d_model**-0.5 if v == "d_model**-0.5" else v for k, v in spec.get("overrides", {}).items()
    }
    return ModelArguments(
        d_model=args.d_model,
        encoder_layers=args.layers,
        decoder_layers=args.layers,
        num_heads=args.num_heads,
        d_ff=args.d_ff,
        position_embedding_type=spec.get("encoding", "alibi"),
        cross_attention_logn_length="off",  # in distribution only: the scaling changes nothing at the trained lengths
        reference=spec.get("reference"),
        # BART's learned table and Marian's sinusoid table have a fixed number of rows: as long as the longest
        # evaluation (the rows past the training lengths stay untrained, as for `learned` in the benchmark)
        max_position_embeddings=max([args.train_max_len, *args.lengths]) if spec.get("reference") in TABLES else None,
        config_overrides=",".join(f"{k}={json.dumps(v)}" for k, v in overrides.items()) or None,
    )


def train_row(args: AblationArguments, variant: str, learning_rate: float, seed: int) -> dict:
    name = row_name(variant, learning_rate, seed)
    folder = Path(args.work_dir) / _file_name(name)
    data_args = DataArguments(
        task=args.task,
        train_min_len=args.train_min_len,
        train_max_len=args.train_max_len,
        eval_lengths=[args.train_max_len],
        num_eval=args.num_eval,
        num_records=args.num_records,
    )
    training_args = recipe_training_args(
        folder, args.steps, learning_rate, args.warmup_steps, args.batch_size, args.eval_every, seed
    )
    stopper = StopAtAccuracy(args.target_accuracy, stop=args.stop_at_target)
    model_args = model_arguments(args, variant)
    start = time.perf_counter()
    model = None
    if VARIANTS[variant].get("convert"):  # the reference's initial weights, drawn as `train` draws them, converted
        set_seed(seed)
        model = convert_model(build_model(model_args, build_tokenizer(), args.train_max_len, args.train_max_len))
    results = train(model_args, data_args, training_args, callbacks=[stopper], model=model)
    return {
        "name": name,
        "variant": variant,
        "learning_rate": learning_rate,
        "seed": seed,
        "model_args": asdict(model_args),
        "steps": results["train"]["global_step"],
        "solved_at": stopper.solved_at,
        "best_exact_match": max((score for _, score in stopper.history), default=None),
        "history": stopper.history,
        "num_parameters": results["num_parameters"],
        "train_seconds": round(time.perf_counter() - start, 1),
    }


def run_ablation(args: AblationArguments, command: str | None = None) -> list[dict]:
    """Train every (variant, lr, seed) row not yet in `output_dir/rows`; rebuild `results.md` after each."""
    rows_dir = Path(args.output_dir) / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    command = command or " ".join(shlex.quote(a) for a in sys.argv)
    done = []
    for variant in args.variants:
        for learning_rate in args.learning_rates:
            for seed in args.seeds:
                name = row_name(variant, learning_rate, seed)
                path = rows_dir / f"{_file_name(name)}.json"
                if path.is_file():
                    row = json.loads(path.read_text())
                    check_same_protocol(asdict(args), row["protocol"], path, SELECTION_FIELDS, asdict(AblationArguments()))
                    relabelled, reference = row.get("relabelled"), row["model_args"].get("reference")
                    # a relabelled row was made under older defaults as another name, which builds its model now
                    if reference is None and not relabelled:
                        check_same_defaults(row.get("defaults"), [row["model_args"]["position_embedding_type"]], path)
                    folder = Path(args.work_dir) / _file_name(name)
                    if not any(_missing_lengths(args, row).values()) or (folder / "config.json").is_file():
                        if extrapolate(args, row):
                            path.write_text(json.dumps(row, indent=2) + "\n")
                            write_table(Path(args.output_dir))
                        continue
                    # e.g. a fresh clone: the rows are committed, the models are not
                    logger.warning(f"{name}: no model in {folder} to evaluate at {args.lengths}; training the row again")
                row = train_row(args, variant, learning_rate, seed)
                row["command"], row["environment"], row["defaults"] = command, environment(), config_defaults()
                row["protocol"] = asdict(args)
                extrapolate(args, row)
                path.write_text(json.dumps(row, indent=2) + "\n")
                done.append(row)
                write_table(Path(args.output_dir))
    write_table(Path(args.output_dir))
    return done


# What selects the rows (or says where they go, or at which lengths a kept row is also evaluated); every other
# field decides how a row's model is trained
SELECTION_FIELDS = ("variants", "learning_rates", "seeds", "lengths", "output_dir", "work_dir")


def _settings(row: dict) -> dict[str, int | None]:
    """How a row's model is evaluated long: {setting: cross_attention_logn_length}; logn for hf_longctx only."""
    if row["model_args"].get("reference") is not None:
        return {"as trained": None}
    return {"as trained": None, "logn": row["protocol"]["train_max_len"]}


def _missing_lengths(args: AblationArguments, row: dict) -> dict[str, list[int]]:
    """{setting: the `args.lengths` the row has no exact match at} (empty lists: nothing missing)."""
    record = row.get("extrapolation", {})
    return {s: [n for n in args.lengths if str(n) not in record.get(s, {})] for s in _settings(row)}


def extrapolate(args: AblationArguments, row: dict) -> bool:
    """Evaluate the row's model at the `args.lengths` its `extrapolation` lacks ({"as trained" | "logn": {length:
    exact match}}); False when nothing was missing. Each length has its own data seed (10,000 + length)."""
    todo = _missing_lengths(args, row)
    if not any(todo.values()):
        return False
    record, settings = row.setdefault("extrapolation", {}), _settings(row)
    folder = Path(args.work_dir) / _file_name(row["name"])
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{row['name']}: no trained model in {folder} to evaluate at {args.lengths}.")
    trained = json.loads((folder / "results.json").read_text())["model_args"]
    if trained != row["model_args"]:
        raise ValueError(
            f"{row['name']}: the model in {folder} was trained with other model arguments than the row records "
            f"({trained} vs {row['model_args']}); train the row again (delete its rows/*.json) to evaluate it long."
        )
    tokenizer = build_tokenizer()
    for setting, lengths in todo.items():
        if not lengths:
            continue
        model = load_model(folder, None, settings[setting])
        table = model.config.max_position_embeddings if row["model_args"].get("reference") in TABLES else None
        if table is not None and max(lengths) > table:
            raise ValueError(
                f"{row['name']}: its position table has {table} rows, fewer than the longest of `lengths` "
                f"({max(lengths)}); train the row again with these `lengths` (its table is sized from them)."
            )
        for n in lengths:
            scores = exact_match_at_length(
                model, tokenizer, row["protocol"]["task"], n, args.num_eval, 10_000 + n, args.batch_size,
                num_records=row["protocol"].get("num_records"),
            )  # fmt: skip
            record.setdefault(setting, {})[str(n)] = scores["exact_match"]
    return True


def write_table(output_dir: Path) -> None:
    rows = [json.loads(p.read_text()) for p in sorted((output_dir / "rows").glob("*.json"))]
    order = {v: i for i, v in enumerate(VARIANTS)}
    rows.sort(key=lambda r: (r["protocol"]["task"], order.get(r["variant"], 1e9), r["learning_rate"], r["seed"]))
    lines = [
        "# Trunk ablation: steps to 0.99 in-distribution exact match",
        "",
        "Each row: one model trained until it reaches the target or its budget (`steps`); `solved at` is the first",
        "check at >= 0.99 (- : not within the budget), `best` the best check. Made with the command in each",
        "`rows/*.json` (its commit and machine are recorded there).",
        "",
        "| task | variant | lr | seed | solved at | best | steps | s | commit |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    notes = list(dict.fromkeys(r["relabelled"] for r in rows if r.get("relabelled")))
    for r in rows:
        task = r["protocol"]["task"] + (f" ({r['protocol']['num_records']} records)" if r["protocol"].get("num_records") else "")
        lines.append(
            f"| {task} | {_variant_cell(r, notes)} | {r['learning_rate']:g} | {r['seed']} | {r['solved_at'] or '-'} | "
            f"{r['best_exact_match']:.2f} | {r['steps']} | {r['train_seconds']:.0f} | {r['environment']['git_commit']} |"
        )
    lines += [""] + [f"- *{k} {note}" for k, note in enumerate(notes, 1)] if notes else []
    extrapolated = [r for r in rows if r.get("extrapolation")]
    if extrapolated:
        lengths = sorted({int(n) for r in extrapolated for scores in r["extrapolation"].values() for n in scores})
        train_max = extrapolated[0]["protocol"]["train_max_len"]
        lines += [
            "",
            f"## Exact match past the training lengths (trained at up to {train_max} tokens)",
            "",
            "`logn`: the same model with `cross_attention_logn_length` = the longest training source (hf_longctx only).",
            "",
            "| task | variant | lr | seed | solved at | " + " | ".join(f"{n} ({n / train_max:g}x)" for n in lengths) + " |",
            "|---|---|---:|---:|---:|" + "---:|" * len(lengths),
        ]
        for r in extrapolated:
            for setting, scores in r["extrapolation"].items():
                variant = _variant_cell(r, notes) + (f" +{setting}" if setting != "as trained" else "")
                cells = [f"{scores[str(n)]:.2f}" if str(n) in scores else "" for n in lengths]
                lines.append(
                    f"| {r['protocol']['task']} | {variant} | {r['learning_rate']:g} | {r['seed']} | "
                    f"{r['solved_at'] or '-'} | " + " | ".join(cells) + " |"
                )
    (output_dir / "results.md").write_text("\n".join(lines) + "\n")
    if extrapolated:
        if importlib.util.find_spec("matplotlib") is None:
            logger.warning(f"{output_dir}/results.md written; its plots need matplotlib: pip install .[bench]")
        else:
            plot_extrapolation(extrapolated, output_dir)


def _variant_cell(row: dict, notes: list[str]) -> str:
    """The row's variant, marked `*k` when it was relabelled after a default changed (`notes[k - 1]`, under the
    table)."""
    return row["variant"] + (f" *{notes.index(row['relabelled']) + 1}" if row.get("relabelled") else "")


REFERENCE_LABELS = {"t5": "HF T5 (relative)", "bart": "HF BART (learned)", "marian": "HF Marian (sinusoidal)"}
HEADLINE_PLOT, ALL_PLOT = "accuracy_vs_length.png", "accuracy_vs_length_all.png"


def extrapolation_curves(rows: list[dict]) -> list[dict]:
    """One curve per (variant, inference setting, learning rate) over its seeds: label, family (the encoding, or
    the HF reference), lengths, and per length the mean, worst and best seed's exact match; in `rows`' order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        for setting, scores in row["extrapolation"].items():
            groups.setdefault((row["variant"], setting, row["learning_rate"]), []).append(scores)
    rates = {rate for _, _, rate in groups}
    curves = []
    for (variant, setting, rate), seeds in groups.items():
        lengths = sorted({int(n) for scores in seeds for n in scores})
        per_length = [[scores[str(n)] for scores in seeds if str(n) in scores] for n in lengths]
        label = REFERENCE_LABELS.get(variant, variant) + ("" if setting == "as trained" else f" +{setting}")
        curves.append({
            "label": label + (f" lr {rate:g}" if len(rates) > 1 else "") + f" ({len(seeds)} seeds)",
            "family": variant if variant in REFERENCE_LABELS else variant.split("/")[-1],
            "seeds": len(seeds),
            "lengths": lengths,
            "mean": [sum(x) / len(x) for x in per_length],
            "worst": [min(x) for x in per_length],
            "best": [max(x) for x in per_length],
        })  # fmt: skip
    return curves


def headline_curves(curves: list[dict]) -> list[dict]:
    """The best curve of each family, in the order families appear: among the family's curves over the most seeds,
    the one with the highest mean exact match over the lengths they all have."""
    families: dict[str, list[dict]] = {}
    for curve in curves:
        families.setdefault(curve["family"], []).append(curve)
    best = []
    for group in families.values():
        most = max(c["seeds"] for c in group)
        group = [c for c in group if c["seeds"] == most]
        shared = set.intersection(*(set(c["lengths"]) for c in group))

        def score(curve, shared=shared):
            return sum(m for n, m in zip(curve["lengths"], curve["mean"], strict=True) if n in shared)

        best.append(max(group, key=score))
    return best


def plot_extrapolation(rows: list[dict], output_dir: Path) -> None:
    """HEADLINE_PLOT: the best curve of each encoding and each HF reference (by mean exact match over the lengths),
    the band from the worst to the best seed; ALL_PLOT: every curve's mean. Legends beside the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves, protocol = extrapolation_curves(rows), rows[0]["protocol"]
    task = protocol["task"] + (f", {protocol['num_records']} records" if protocol.get("num_records") else "")
    for path, shown, bands in ((HEADLINE_PLOT, headline_curves(curves), True), (ALL_PLOT, curves, False)):
        fig, ax = plt.subplots(figsize=(8.0, 4.0), dpi=100)
        colours = plt.cm.tab10 if len(shown) <= 10 else plt.cm.tab20
        for i, curve in enumerate(shown):  # past 20 curves the colours come round again, with another line style
            colour = colours(i % colours.N)
            style = ("--" if curve["family"] in REFERENCE_LABELS else "-") if i < colours.N else ":"
            ax.plot(curve["lengths"], curve["mean"], style, color=colour, marker="o", markersize=3, label=curve["label"])
            if bands:
                ax.fill_between(curve["lengths"], curve["worst"], curve["best"], color=colour, alpha=0.15, linewidth=0)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"source length (tokens); trained at {protocol['train_min_len']}-{protocol['train_max_len']}")
        ax.set_ylabel("exact match (greedy), mean over seeds")
        ax.set_title(f"{task}: " + ("best of each encoding; band: worst to best seed" if bands else "every variant"))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        fig.savefig(output_dir / path)
        plt.close(fig)


__all__ = ["AblationArguments", "VARIANTS", "T5_TRUNK", "run_ablation", "write_table", "extrapolation_curves", "headline_curves"]

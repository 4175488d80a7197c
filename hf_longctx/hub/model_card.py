"""The model card (README.md) of a trained model folder, with `huggingface_hub.ModelCard` / `ModelCardData`.

`write_model_card(output_dir, results)` runs at the end of `training.trainer.train` and `training.text.train_text`:
- the YAML metadata is a `ModelCardData`: `library_name: transformers`, `pipeline_tag: text2text-generation`, tags
  (`hf_longctx`, the position encodings, the task), datasets (a hub dataset only where one was used: the synthetic
  tasks are generated, not downloaded), metrics, and the evaluation results as `eval_results` (the model-index:
  one entry per evaluation length and metric);
- the body is `hf_longctx/hub/model_card_template.md` (Jinja) filled from `results` (what `train` returns) and the folder's
  `config.json`: architecture and position encoding, training data and lengths, the results table, how to load it,
  limitations and the command that produced it.

`ModelCard.validate` posts the card to the hub and needs the network; offline, `check_model_card` reads README.md
back with `ModelCard.load` and checks that its metadata round-trips to what was written.
"""

import dataclasses
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers.utils import logging

from ..configuration_longctx import SAVED_BEFORE, LongCtxConfig, has_relative_bias
from ..data.tasks import TASKS, depth_bin_labels, make_task
from ..positions import POSITION_ENCODINGS, PositionEncoding

logger = logging.get_logger(__name__)

# The template ships inside the package (package data, as `metrics/`); `HF_LONGCTX_MODEL_CARD_TEMPLATE` points
# elsewhere. Without it the card falls back to huggingface_hub's generic template (same metadata, less text).
# The project's committed length-extrapolation benchmark (`scripts/bench_extrapolation.py`): where a source checkout
# has it, every card shows its table and plot next to the model's own evaluation.
BENCHMARK_DIR = Path(
    os.environ.get("HF_LONGCTX_BENCHMARK_DIR", Path(__file__).resolve().parents[2] / "results" / "extrapolation")
)
BENCHMARK_PLOT = "accuracy_vs_length.png"
MODEL_CARD_TEMPLATE = Path(
    os.environ.get(
        "HF_LONGCTX_MODEL_CARD_TEMPLATE", Path(__file__).resolve().parent / "model_card_template.md"
    )
)
MODEL_CARD = "README.md"
PIPELINE_TAG = "text2text-generation"  # the hub's task for encoder-decoder generation (transformers 5 has no pipeline)
TEXT_METRICS = (("loss", "Loss"), ("exact_match", "Exact match"), ("token_accuracy", "Token accuracy"),
                ("chrf", "chrF"), ("bleu", "BLEU"))  # fmt: skip

def write_model_card(
    output_dir: str | os.PathLike,
    results: dict,
    training_args=None,
    command: str | None = None,
    model_id: str | None = None,
    example_source: str | None = None,
    license: str = "apache-2.0",
) -> ModelCard:
    """Write `output_dir/README.md` for the model saved there, from the `results` of `train` or `train_text`.

    Args:
        output_dir: the saved model folder (its `config.json` describes the architecture).
        results: the dict `train` / `train_text` return (and write to results.json).
        training_args: the run's `Seq2SeqTrainingArguments`, for the optimisation summary and the arguments block.
        command: the command line that produced the run; default: this process's (`sys.argv`).
        model_id: the name used in the card's loading snippet and the model-index; default: `output_dir` as given
            (`hub.push.stage_model_folder` rewrites it to the repo id when the folder is pushed).
        example_source: an input for the loading snippet; default: a short example of the task (synthetic runs).
        license: the card's licence (the hub shows it; change it for your data's terms).
    Returns the card; raises ValueError if README.md does not read back to the same metadata.
    """
    output_dir = Path(output_dir)
    config = json.loads((output_dir / "config.json").read_text())
    model_id = model_id or str(output_dir)
    card_data = build_card_data(results, config, model_id, license)
    template_kwargs = template_values(results, config, training_args, command, model_id, example_source)
    # The project's passkey benchmark is context for a passkey model only: any other card describes its own model.
    passkey = results.get("task") == "passkey"
    template_kwargs["benchmark"] = benchmark_values(BENCHMARK_DIR, output_dir) if passkey else None

    if MODEL_CARD_TEMPLATE.is_file():
        card = ModelCard.from_template(card_data, template_path=str(MODEL_CARD_TEMPLATE), **template_kwargs)
    else:
        logger.warning(
            f"No model card template at {MODEL_CARD_TEMPLATE}: writing huggingface_hub's generic card. Run from a "
            "source checkout of hf_longctx or set HF_LONGCTX_MODEL_CARD_TEMPLATE to `hf_longctx/hub/model_card_template.md`."
        )
        summary = f"An hf_longctx model with {config['position_embedding_type']} positions."
        card = ModelCard.from_template(card_data, model_id=model_id, model_summary=summary)
    path = output_dir / MODEL_CARD
    card.save(path)
    check_model_card(path, expected=card_data)
    logger.info(f"Model card written to {path}")
    return card


def check_model_card(path: str | os.PathLike, expected: ModelCardData | None = None) -> ModelCard:
    """Offline validation of a README.md model card: the YAML metadata parses, has the fields the hub uses, and
    (with `expected`) round-trips to it. `ModelCard.validate` checks the same on the hub, which needs the network."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No model card at {path}: write one with `hf_longctx.hub.model_card.write_model_card`.")
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        raise ValueError(f"{path} has no YAML metadata block (a model card starts with `---`).")
    card = ModelCard.load(path, ignore_metadata_errors=False)  # raises on YAML that does not parse
    data = card.data.to_dict()
    missing = [key for key in ("library_name", "pipeline_tag", "tags") if not data.get(key)]
    if missing:
        raise ValueError(f"{path}: the metadata lacks {', '.join(missing)}.")
    if expected is not None and data != expected.to_dict():
        raise ValueError(
            f"{path}: the metadata does not read back as written.\nwritten: {expected.to_dict()}\nread: {data}"
        )
    return card


# ------------------------------------------------------------------------------------------------- metadata


def build_card_data(results: dict, config: dict, model_id: str, license: str = "apache-2.0") -> ModelCardData:
    """`ModelCardData` of a run: tags, datasets, metrics and the model-index of the evaluation results."""
    encoder_pe = config.get("position_embedding_type", results["position_embedding_type"])
    decoder_pe = config.get("decoder_position_embedding_type") or encoder_pe
    tags = ["hf_longctx", "encoder-decoder", "long-context", f"{encoder_pe}-positions"]
    if decoder_pe != encoder_pe:
        tags.append(f"decoder-{decoder_pe}-positions")
    if config.get("position_embedding_type") == "rope" and (config.get("rope_parameters") or {}).get("rope_type"):
        tags.append(f"rope-{config['rope_parameters']['rope_type']}")
    tags.append("custom_code")  # auto_map + modeling files: loads with trust_remote_code=True

    if is_synthetic(results):
        tags += ["synthetic", results["task"], "length-extrapolation"]
        datasets, language = None, None
        metrics = ["exact_match", "token_accuracy"]
    else:
        text_args = results["text_args"]
        tags.append(results["objective"])
        datasets = [text_args["dataset_name"]] if text_args.get("dataset_name") else None
        language = None  # unknown for an arbitrary corpus; set it in the card if you know it
        metrics = [m for m, _ in TEXT_METRICS[1:] if m in results["eval"]] or None
    return ModelCardData(
        model_name=model_id,
        license=license,
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        tags=tags,
        datasets=datasets,
        language=language,
        metrics=metrics,
        eval_results=eval_results(results) or None,
    )


def eval_results(results: dict) -> list[EvalResult]:
    """The model-index entries: per evaluation length (synthetic) or on the held-out set (text), one per metric."""
    entries = []
    if is_synthetic(results):
        task, data_args = results["task"], results["data_args"]
        for length, scores in results["eval"].items():
            for metric, pretty in (("exact_match", "Exact match"), ("token_accuracy", "Token accuracy")):
                entries.append(
                    EvalResult(
                        task_type=PIPELINE_TAG,
                        task_name=f"{task} at {length} tokens (trained at {data_args['train_min_len']}-"
                        f"{data_args['train_max_len']})",
                        dataset_type=f"hf_longctx-synthetic-{task}",
                        dataset_name=f"synthetic {task}, {length}-token sources",
                        dataset_config=f"length-{length}",
                        dataset_split="test",
                        dataset_args={"source_length": int(length), "num_samples": scores["num_samples"]},
                        metric_type=metric,
                        metric_name=f"{pretty} @ {length} tokens",
                        metric_value=round(float(scores[metric]), 4),
                    )
                )
        return entries
    text_args = results["text_args"]
    source = text_args.get("dataset_name") or Path(text_args["text_file"]).name
    for metric, pretty in TEXT_METRICS[1:]:  # the loss is in the card's table, not in the model-index
        if metric in results["eval"]:
            entries.append(
                EvalResult(
                    task_type=PIPELINE_TAG,
                    task_name=f"{results['objective']} on {source}",
                    dataset_type=text_args.get("dataset_name") or f"local-{Path(source).stem}",
                    dataset_name=f"{source}, {text_args['num_eval_examples']} held-out examples",
                    dataset_config=text_args.get("dataset_config_name"),
                    dataset_split="held-out",
                    metric_type=metric,
                    metric_name=f"{pretty} (held-out)",
                    metric_value=round(float(results["eval"][metric]), 4),
                )
            )
    return entries


def is_synthetic(results: dict) -> bool:
    return "task" in results  # train() records the synthetic task; train_text() records `objective` instead


# ---------------------------------------------------------------------------------------------------- body


def template_values(results, config, training_args, command, model_id, example_source) -> dict:
    """The Jinja variables of `hf_longctx/hub/model_card_template.md`: facts of the run and the saved config. The
    prose that states them lives in the template."""
    encoder_pe, decoder_pe = _stack_encodings(config).values()
    relative_bias_stacks = _stacks_with_relative_bias(config)
    local_radius = config.get("encoder_local_radius")  # a config saved before the field had none
    biased = any(_encoding(e).kind == "bias" for e in (encoder_pe, decoder_pe)) or relative_bias_stacks or local_radius
    values = {
        "model_id": model_id,
        "num_parameters": results["num_parameters"],
        "arch": {
            **{k: config.get(k) for k in ("d_model", "num_heads", "d_ff", "encoder_layers", "decoder_layers")},
            "vocab_size": config["vocab_size"],
            "pre_norm": config.get("pre_norm", True),
            "norm_type": config.get("norm_type", "layernorm"),
            "position_embedding_type": encoder_pe,
            "position_kind": _kind(encoder_pe),
            "decoder_position_embedding_type": decoder_pe,
            "decoder_position_kind": _kind(decoder_pe),
            "rope_parameters": config.get("rope_parameters") if "rope" in (encoder_pe, decoder_pe) else None,
            # from this many key tokens on, bias encodings take the query-chunked path (None: never)
            "chunked_from": config.get("chunked_attention_min_length", _field_default("chunked_attention_min_length"))
            if biased and config.get("chunked_attention", "auto") != "never"
            else None,
        },
        # each encoding's one-line description is a fact of its class (positions.py)
        "position_descriptions": list(
            dict.fromkeys(_encoding(pe).description for pe in (encoder_pe, decoder_pe) if _encoding(pe).description)
        ),
        "decoder_without_positions": decoder_pe == "none",
        "relative_bias_stacks": " and ".join(f"{e} {stack}" for stack, e in relative_bias_stacks.items()),
        "relative_bias_on_alibi": "alibi" in relative_bias_stacks.values(),
        "encoder_conv_kernel": config.get("encoder_conv_kernel", 0),  # a config saved before the field had none
        "encoder_local_radius": local_radius,
        # initialised as T5 is where that is the encoding's default (the card says why, per encoding)
        "fan_in_default": encoder_pe
        if config.get("initializer", "normal") == "fan_in" and _encoding(encoder_pe).initializer_by_default == "fan_in"
        else None,
        # its bucket distance where the option is on (a config saved before the field had neither)
        "cross_attention_alignment": config.get("cross_attention_alignment_max_distance")
        if config.get("cross_attention_alignment")
        else None,
        "learned_table": config.get("max_position_embeddings") if "learned" in (encoder_pe, decoder_pe) else None,
        "decoding": _decoding(results.get("generation")),
        "optimisation": _optimisation(results, training_args),
        "command": command or invocation_command(),
        "arguments_json": json.dumps(_arguments(results, training_args), indent=2, default=str),
        **_versions(),
    }
    if is_synthetic(results):
        values |= _synthetic_values(results, config, example_source)
    else:
        values |= _text_values(results, example_source)
    return values


def _decoding(generation: dict | None) -> str:
    """How the final evaluation generated (results' `generation`; a run recorded before it had one was greedy)."""
    generation = generation or {}
    beams = generation.get("num_beams") or 1
    words = "greedy decoding" if beams == 1 else f"beam search ({beams} beams)"
    if generation.get("max_new_tokens"):
        return words + f", at most {generation['max_new_tokens']} new tokens"
    return words + (f", at most {generation['max_length']} tokens" if generation.get("max_length") else "")


def _synthetic_values(results: dict, config: dict, example_source: str | None) -> dict:
    data_args, task = results["data_args"], results["task"]
    train_max = data_args["train_max_len"]
    rows, depth_rows = [], []
    for length, scores in results["eval"].items():
        rows.append(
            {
                "length": length,
                "ratio": f"{int(length) / train_max:.1f}",
                "exact_match": f"{scores['exact_match']:.3f}",
                "token_accuracy": f"{scores['token_accuracy']:.3f}",
                "num_samples": scores["num_samples"],
            }
        )
        if "exact_match_by_depth" in scores:
            values = ["-" if v is None else f"{v:.2f}" for v in scores["exact_match_by_depth"]]
            depth_rows.append({"length": length, "bins": values})
    if example_source is None:  # the generator of the training data: a real input of the task
        min_len = data_args["train_min_len"]
        example_source = make_task(task, 1, min_len, min_len, seed=data_args["dataset_seed"])[0]["source"]
    return {
        "kind": "synthetic",
        "position_embedding_type": results["position_embedding_type"],
        "task": task,
        "task_description": TASKS[task].description if task in TASKS else "",
        **{k: data_args[k] for k in ("train_min_len", "train_max_len", "eval_lengths", "num_train", "num_eval")},
        "dataset_seed": data_args["dataset_seed"],
        "vocab_size": config["vocab_size"],
        "eval_rows": rows,
        "depth_rows": depth_rows,
        "depth_bins": depth_bin_labels(),
        "example_source": repr(example_source),
    }


def _text_values(results: dict, example_source: str | None) -> dict:
    text_args = results["text_args"]
    source = text_args.get("dataset_name") or text_args["text_file"]
    return {
        "kind": "text",
        "position_embedding_type": results["position_embedding_type"],
        "objective": results["objective"],
        "text": text_args,  # the run's TextDataArguments, as the template's objective and data lines read them
        "source": source,
        "source_name": Path(source).name,
        "num_train_examples": results.get("num_train_examples", "?"),
        "vocab_size": results.get("vocab_size", "?"),
        "eval_rows": [
            {"name": name, "value": f"{results['eval'][key]:.4f}"}
            for key, name in TEXT_METRICS
            if key in results["eval"]
        ],
        "example_source": repr(example_source or "Replace this with an input like the training sources."),
    }


def _field_default(name: str):
    """LongCtxConfig's default of a field (for a saved config that predates it)."""
    return next(f.default for f in dataclasses.fields(LongCtxConfig) if f.name == name)


def _stack_encodings(config: dict) -> dict[str, str]:
    """{"encoder": ..., "decoder": ...} of a saved config's dict (the decoder's defaults to the encoder's)."""
    encoder = config["position_embedding_type"]
    return {"encoder": encoder, "decoder": config.get("decoder_position_embedding_type") or encoder}


def _encoding(name: str) -> type:
    return POSITION_ENCODINGS.get(name, PositionEncoding)  # a folder made with an encoding not registered here


def _kind(name: str) -> str | None:
    """The encoding's `kind` (the template says what it means), None where the name is not registered here."""
    return _encoding(name).kind if name in POSITION_ENCODINGS else None


def _stacks_with_relative_bias(config: dict) -> dict[str, str]:
    """{stack: encoding} of the stacks `relative_bias` is on (a saved config without the field predates it)."""
    relative_bias = config.get("relative_bias", SAVED_BEFORE["relative_bias"])
    return {stack: e for stack, e in _stack_encodings(config).items() if has_relative_bias(relative_bias, e)}


def _optimisation(results: dict, training_args) -> dict:
    """What the template's optimisation line states: steps and time, the optimiser's settings, the final loss."""
    train = results["train"]
    facts = {
        "steps": train["global_step"],
        "runtime": None if train.get("train_runtime") is None else f"{float(train['train_runtime']):.0f}",
        "train_loss": None if train.get("train_loss") is None else f"{float(train['train_loss']):.3f}",
        "args": None,
    }
    if training_args is not None:
        facts["args"] = {
            "batch": training_args.per_device_train_batch_size * max(1, training_args.world_size),
            "accumulation": training_args.gradient_accumulation_steps,
            "learning_rate": f"{training_args.learning_rate:g}",
            "scheduler": _plain(training_args.lr_scheduler_type),
            "warmup_steps": training_args.warmup_steps,
            "weight_decay": f"{training_args.weight_decay:g}",
            "seed": training_args.seed,
        }
    return facts


def benchmark_values(benchmark_dir: Path, output_dir: Path) -> dict | None:
    """The project benchmark's passkey table for the card (None without a results.json); copies its plot into the
    model folder, so the card shows it on the hub too."""
    path = benchmark_dir / "results.json"
    if not path.is_file():
        return None
    bench = json.loads(path.read_text())
    rows = [r for r in bench["rows"] if r["task"] == "passkey"]
    lengths = sorted({int(k) for r in rows for k in r["eval"]})
    trained = bench["protocol"]["train_max_len"]

    def cell(row, n):
        score = row["eval"].get(str(n), {}).get("exact_match")
        return "-" if score is None else f"{score:.2f}"

    plot = None
    if (benchmark_dir / BENCHMARK_PLOT).is_file():
        shutil.copyfile(benchmark_dir / BENCHMARK_PLOT, output_dir / BENCHMARK_PLOT)
        plot = BENCHMARK_PLOT
    return {
        "command": " ; ".join(bench.get("commands") or [bench["command"]]),
        "num_eval": bench["protocol"].get("num_eval"),
        "commit": bench["environment"].get("git_commit"),
        "header": [f"{n} ({n / trained:g}x)" for n in lengths],
        "rows": [{"name": r["name"], "cells": [cell(r, n) for n in lengths]} for r in rows],
        "train_range": f"{bench['protocol']['train_min_len']}-{trained}",
        "plot": plot,
    }


def _arguments(results: dict, training_args) -> dict:
    arguments = {k: results[k] for k in ("model_args", "data_args", "text_args") if k in results}
    if training_args is not None:
        keep = (
            "max_steps", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
            "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "seed", "bf16", "fp16",
        )  # fmt: skip
        arguments["training_args"] = {k: _plain(getattr(training_args, k)) for k in keep}
    return arguments


def _plain(value):
    """An enum's value (`SchedulerType.COSINE` -> "cosine"), anything else unchanged."""
    return getattr(value, "value", value)


def invocation_command(argv: list[str] | None = None) -> str:
    """This process's command line, as a user would type it (`python scripts/train.py ...`, `hf-longctx-train ...`,
    `torchrun --nproc_per_node N ...` or `accelerate launch --num_processes N ...` under those launchers), with
    paths below the working directory written relative to it: a card names no folder of the machine it ran on."""
    argv = [_relative(a) for a in (sys.argv if argv is None else argv)]
    program = argv[0] if argv else "python"
    if program.endswith(".py"):
        prefix = ["python", program]
    elif program in ("-c", ""):
        prefix = ["python", "-c", "..."]
    else:
        prefix = [Path(program).name]
    launcher = launched_by()
    if launcher != "python" and prefix[0] == "python":
        processes = os.environ.get("WORLD_SIZE", "?")
        launch = ["torchrun", "--nproc_per_node"] if launcher == "torchrun" else ["accelerate", "launch", "--num_processes"]
        prefix = [*launch, processes, *prefix[1:]]
    return shlex.join(prefix + argv[1:])


def launched_by() -> str:
    """"accelerate" (`accelerate launch` exports ACCELERATE_* settings), "torchrun" (several processes otherwise), or
    "python" (one process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return "python"
    return "accelerate" if "ACCELERATE_MIXED_PRECISION" in os.environ else "torchrun"


def _relative(arg: str) -> str:
    """`arg` relative to the working directory where it is an absolute path below it (also as `--flag=/path`)."""
    flag, sep, value = arg.rpartition("=") if arg.startswith("--") and "=" in arg else ("", "", arg)
    if os.path.isabs(value):
        try:
            value = os.path.relpath(value) if Path(value).resolve().is_relative_to(Path.cwd().resolve()) else value
        except ValueError:
            pass
    return f"{flag}{sep}{value}"


def _versions() -> dict:
    import torch
    import transformers

    from .. import __version__

    return {
        "hf_longctx_version": __version__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }


__all__ = ["write_model_card", "check_model_card", "build_card_data", "eval_results", "MODEL_CARD_TEMPLATE"]

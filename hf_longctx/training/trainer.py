"""Training and length-extrapolation evaluation on the synthetic tasks, with HF's `Seq2SeqTrainer`.

`train(model_args, data_args, training_args)`:
1. builds the word-level tokenizer (`data/tokenization.py`) and the task datasets (`data/tasks.py`): a training set with
   source lengths in [train_min_len, train_max_len], an in-distribution evaluation set for evaluations during
   training, and one set per length in `eval_lengths`;
2. builds a fresh `LongCtxForConditionalGeneration` through `AutoModelForSeq2SeqLM.from_config`;
3. trains with `Seq2SeqTrainer` + `DataCollatorForSeq2Seq` (labels padded with -100; the model honours
   `num_items_in_batch`, so gradient accumulation reports the right loss, ARCHITECTURE.md T8);
4. evaluates each length with `predict_with_generate` (greedy unless `generation_num_beams`) and `compute_metrics` (exact match and token accuracy
   from the shipped `evaluate` modules in `hf_longctx/training/metrics/`), plus exact match by needle depth;
5. saves the model folder (safetensors weights, config + modeling code, tokenizer, generation config) to
   `output_dir`, with `results.json`, a markdown table `results.md` and the model card README.md (`hub/model_card.py`).

`--resume_from_checkpoint <folder>` (or `last`: the newest `checkpoint-*` in `output_dir`) continues an interrupted
run; with `--save_strategy steps` the checkpoints hold model.safetensors, optimizer, scheduler and RNG states, so a
resumed run ends on the same weights as an uninterrupted one. The same entry point runs data parallel under
`torchrun --nproc_per_node N` (gloo on CPU); `per_device_train_batch_size` is then per process.
"""

import copy
import dataclasses
import difflib
import functools
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import evaluate
import numpy as np
import torch
from datasets import Dataset
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    DataCollatorForSeq2Seq,
    EvalPrediction,
    PreTrainedTokenizerBase,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
    set_seed,
)
from transformers.trainer import TRAINER_STATE_NAME, TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.training_args import ParallelMode
from transformers.utils import logging

from ..configuration_longctx import LongCtxConfig
from ..data.tasks import DEPTH_BINS, TASKS, depth_bin_labels, make_task, source_lengths
from ..data.tokenization import build_tokenizer
from ..hub.model_card import launched_by, write_model_card

logger = logging.get_logger(__name__)

# The metric modules ship inside the package (`hf_longctx/training/metrics/<name>/<name>.py`, package data), so an installed
# wheel has them too; `HF_LONGCTX_METRICS_DIR` points elsewhere.
METRICS_DIR = Path(os.environ.get("HF_LONGCTX_METRICS_DIR", Path(__file__).resolve().parent / "metrics"))
RESULTS_JSON, RESULTS_TABLE = "results.json", "results.md"


TRAINED, OFF = "trained", "off"  # the words `ModelArguments.cross_attention_logn_length` takes besides a length


def logn_length(model_args: "ModelArguments", trained_length: int | None) -> int | None:
    """`LongCtxConfig.cross_attention_logn_length` for `model_args.cross_attention_logn_length`."""
    value = str(model_args.cross_attention_logn_length).strip().lower()
    if value == TRAINED:
        return trained_length
    if value == OFF:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"`cross_attention_logn_length`={model_args.cross_attention_logn_length!r} is not `{TRAINED}` (the "
            f"longest training source), `{OFF}` or a length (an integer >= 2)."
        ) from None


@dataclass
class ModelArguments:
    """Sizes of a fresh LongCtx model (the fields of `LongCtxConfig` a length-extrapolation study varies)."""

    d_model: int = field(default=64, metadata={"help": "Model width."})
    encoder_layers: int = field(default=2, metadata={"help": "Encoder layers."})
    decoder_layers: int = field(default=2, metadata={"help": "Decoder layers."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads; must divide d_model."})
    d_ff: int = field(default=256, metadata={"help": "Feed-forward width."})
    position_embedding_type: str = field(
        default="alibi",
        # no argparse `choices`: LongCtxConfig checks the name against the registry when the model is built, which
        # also knows encodings registered after this module was imported
        metadata={"help": "Encoder (and default decoder) positions: a name of hf_longctx.POSITION_ENCODINGS."},
    )
    decoder_position_embedding_type: str | None = field(
        default=None, metadata={"help": "Decoder positions; defaults to position_embedding_type."}
    )
    dropout: float = field(default=0.0, metadata={"help": "Residual and embedding dropout."})
    attention_dropout: float = field(default=0.0, metadata={"help": "Dropout on attention probabilities."})
    max_position_embeddings: int | None = field(
        default=None,
        metadata={
            "help": "Rows of the `learned` table; defaults to the longest train or eval length, so `learned` "
            "runs every evaluation (on rows it never trained)."
        },
    )
    sinusoidal_scale: float = field(
        default=0.02,
        metadata={
            "help": "Amplitude of sinusoidal positions: 0.02 puts them at the scale of the N(0, 0.02) token embeddings "
            "(at 1.0, the formula's amplitude, a small model does not train; see LongCtxConfig)."
        },
    )
    randomized_positions_max_length: int | None = field(
        default=None,
        metadata={
            "help": "Randomized position training (Ruoss et al. 2023): encoder positions in training are a sorted "
            "random sample below this bound (e.g. the longest evaluation length); None trains on 0..L-1."
        },
    )
    relative_attention_max_distance: int = field(
        default=128,
        metadata={
            "help": "`relative`: distance from which T5's buckets stop growing (128, T5's value). Training never "
            "reaches the buckets past its longest source, so past it a model meets untrained biases; at or below "
            "the training length every bucket is trained."
        },
    )
    cross_attention_logn_length: str = field(
        default=TRAINED,
        metadata={
            "help": "The model's `cross_attention_logn_length` (see LongCtxConfig): over longer inputs than this the "
            "cross-attention queries are scaled by log n / log(this length), which keeps retrieval as sharp as in "
            f"training; no effect at or below it. `{TRAINED}` (default): the longest training source; an integer: "
            f"that length; `{OFF}`: no scaling. An HF `reference` has no such option."
        },
    )
    attn_implementation: str = field(default="sdpa", metadata={"help": "eager | sdpa | flex_attention."})
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Further LongCtxConfig fields, as HF's run_clm.py takes them: 'norm_type=rmsnorm,attention_scale=1.0' "
            "(values read as JSON where they parse: numbers, true/false, null; else as strings)."
        },
    )
    reference: str | None = field(
        default=None,
        metadata={
            "help": "Train an HF reference model of the same size instead of LongCtx: t5 (T5ForConditionalGeneration, "
            "relative buckets), bart (BartForConditionalGeneration, learned table), marian (MarianMTModel, sinusoids). "
            "The position and LongCtx-only options then do not apply.",
            "choices": ["t5", "bart", "marian"],
        },
    )


@dataclass
class DataArguments:
    """Which synthetic task, at which lengths (encoder tokens, EOS included; see `data/tasks.py`)."""

    task: str = field(default="passkey", metadata={"help": "Synthetic task.", "choices": list(TASKS)})
    train_min_len: int = field(default=16, metadata={"help": "Shortest training source."})
    train_max_len: int = field(default=64, metadata={"help": "Longest training source."})
    eval_lengths: list[int] = field(
        default_factory=lambda: [64, 256, 1024, 2048], metadata={"help": "Source lengths evaluated after training."}
    )
    num_train: int = field(default=50000, metadata={"help": "Training examples (epochs repeat them)."})
    num_eval: int = field(default=200, metadata={"help": "Examples per evaluation length."})
    num_records: int | None = field(
        default=None, metadata={"help": "Records per source of the `multikey` task (default 2); only for multikey."}
    )
    # Not `seed`/`data_seed`: HfArgumentParser puts these dataclasses beside Seq2SeqTrainingArguments, which has both.
    dataset_seed: int = field(default=1234, metadata={"help": "Seed of the generated datasets."})

    def __post_init__(self):
        """Each flag checked by its own name (here, not as an argument of `make_task` deep in the run)."""
        if not self.eval_lengths:
            raise ValueError("`eval_lengths` must list at least one source length.")
        for name in ("num_train", "num_eval"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` is a number of examples and must be at least 1, got {getattr(self, name)}.")
        if self.train_min_len > self.train_max_len:
            raise ValueError(f"`train_min_len`={self.train_min_len} exceeds `train_max_len`={self.train_max_len}.")
        shortest, longest, needs = source_lengths(self.task, self.num_records)
        for name, lengths in (("train_min_len", [self.train_min_len]), ("eval_lengths", self.eval_lengths)):
            if min(lengths) < shortest:
                raise ValueError(
                    f"`{name}` has {min(lengths)}, too short for task {self.task!r}: a source needs at least {shortest} "
                    f"tokens ({needs})."
                )
        for name, lengths in (("train_max_len", [self.train_max_len]), ("eval_lengths", self.eval_lengths)):
            if longest is not None and max(lengths) > longest:
                raise ValueError(
                    f"`{name}` has {max(lengths)}, too long for task {self.task!r}: it runs out of distinct keys past "
                    f"{longest} tokens."
                )


def load_metric(name: str) -> evaluate.EvaluationModule:
    """One of the shipped metric modules, loaded by path (works offline: no hub lookup)."""
    path = METRICS_DIR / name
    if not (path / f"{name}.py").is_file():
        raise FileNotFoundError(
            f"No metric module {path / (name + '.py')}; run from a source checkout of hf_longctx or set "
            "HF_LONGCTX_METRICS_DIR to the folder holding the `<name>/<name>.py` metric modules."
        )
    return evaluate.load(str(path))


def exact_match_by_depth(predictions: list[str], references: list[str], depths: list[float]) -> list[float | None]:
    """The shipped exact match in DEPTH_BINS equal bins of needle depth (None for an empty bin)."""
    exact_match, bins = load_metric("exact_match"), [([], []) for _ in range(DEPTH_BINS)]
    for prediction, reference, depth in zip(predictions, references, depths, strict=True):
        predicted, expected = bins[min(int(depth * DEPTH_BINS), DEPTH_BINS - 1)]
        predicted.append(prediction)
        expected.append(reference)
    return [
        exact_match.compute(predictions=p, references=r)["exact_match"] if p else None for p, r in bins
    ]


def tokenize(dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """input_ids / attention_mask / labels (EOS-terminated); the text and bookkeeping columns are dropped."""
    return dataset.map(
        lambda batch: tokenizer(batch["source"], text_target=batch["target"]),
        batched=True,
        remove_columns=dataset.column_names,
        desc="Tokenizing",
    )


def build_model(
    model_args: ModelArguments, tokenizer: PreTrainedTokenizerBase, max_length: int, trained_length: int | None = None
):
    """A fresh LongCtxForConditionalGeneration sized by `model_args`, with ids taken from `tokenizer`.

    `max_position_embeddings` is the table size for `learned` (`max_length`, every evaluation runs) and the
    trained length otherwise (`trained_length`): rope's dynamic NTK scaling switches on past it, as in HF. The
    trained length is also the default `cross_attention_logn_length` (`logn_length`)."""
    if model_args.reference is not None:
        return build_reference_model(model_args, tokenizer, max_length)
    table = max_length if model_args.position_embedding_type == "learned" or trained_length is None else trained_length
    stacks = {model_args.position_embedding_type, model_args.decoder_position_embedding_type}
    fields = dict(
        vocab_size=len(tokenizer),
        d_model=model_args.d_model,
        encoder_layers=model_args.encoder_layers,
        decoder_layers=model_args.decoder_layers,
        num_heads=model_args.num_heads,
        d_ff=model_args.d_ff,
        position_embedding_type=model_args.position_embedding_type,
        decoder_position_embedding_type=model_args.decoder_position_embedding_type,
        dropout=model_args.dropout,
        attention_dropout=model_args.attention_dropout,
        max_position_embeddings=model_args.max_position_embeddings or table,
        randomized_positions_max_length=model_args.randomized_positions_max_length,
        cross_attention_logn_length=logn_length(model_args, trained_length),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    # an encoding's options where a stack reads them, or where the user changed them (the config then warns that
    # they do nothing); their training defaults alone would make every other model warn
    defaults = ModelArguments()
    for name, encoding in (("sinusoidal_scale", "sinusoidal"), ("relative_attention_max_distance", "relative")):
        if encoding in stacks or getattr(model_args, name) != getattr(defaults, name):
            fields[name] = getattr(model_args, name)
    overrides = parse_config_overrides(model_args.config_overrides)
    flags = {f.name for f in dataclasses.fields(ModelArguments)}
    # (a flag left at its default cannot be told from one not given: only a changed flag counts; it is compared as
    # built, so `--cross_attention_logn_length 64` and the override 64 agree)
    clash = [
        name
        for name, value in overrides.items()
        if name in flags and getattr(model_args, name) != getattr(defaults, name) and value != fields.get(name, getattr(model_args, name))
    ]
    if clash:
        raise ValueError(
            f"`config_overrides` sets {', '.join(f'`{n}`={overrides[n]!r}' for n in clash)}, which "
            f"{'is' if len(clash) == 1 else 'are'} also given as {', '.join(f'--{n} {getattr(model_args, n)}' for n in clash)}: "
            "say it once (the flag, or the override)."
        )
    config = LongCtxConfig(**{**fields, **overrides})
    return _greedy(AutoModelForSeq2SeqLM.from_config(config, attn_implementation=model_args.attn_implementation))


def parse_config_overrides(overrides: str | None) -> dict:
    """'a=1,b=rmsnorm,c=null,d={"x": 1, "y": 2}' -> {'a': 1, 'b': 'rmsnorm', 'c': None, 'd': {...}}: values parsed as
    JSON where they parse (commas inside brackets or quotes do not split), integers given for float fields made
    floats; a name `LongCtxConfig` does not take (`accepted_names`) is refused."""
    if not overrides:
        return {}
    known = {f.name: f for f in dataclasses.fields(LongCtxConfig)}
    names = LongCtxConfig.accepted_names()
    fields = {}
    for item in _top_level_split(overrides):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(
                f"`config_overrides`: {item!r} is not `field=value`; write e.g. 'norm_type=rmsnorm,attention_scale=1.0'."
            )
        if name not in names:
            close = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.6)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            raise ValueError(f"`config_overrides`: `{name}` is not a field of LongCtxConfig{hint}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value.strip()
        if name in known and isinstance(parsed, int) and not isinstance(parsed, bool) and "float" in str(known[name].type):
            parsed = float(parsed)
        fields[name] = parsed
    return fields


def _top_level_split(text: str) -> list[str]:
    """`text` split at the commas outside brackets, braces and double quotes."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "[{":
            depth += 1
        elif not quoted and char in "]}":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def build_reference_model(model_args: ModelArguments, tokenizer: PreTrainedTokenizerBase, max_length: int):
    """The HF model `model_args.reference` names, at the sizes of `model_args` (the issue's references: T5 for
    `relative`, BART for `learned`, Marian for `sinusoidal`), freshly initialised by its own `_init_weights`."""
    from transformers import BartConfig, MarianConfig, T5Config

    own_encoding = {"t5": "relative", "bart": "learned", "marian": "sinusoidal"}[model_args.reference]
    defaults = ModelArguments()
    # options the reference does not have: LongCtx's, and those of the other families
    unused = ["config_overrides", "decoder_position_embedding_type", "randomized_positions_max_length",
              "sinusoidal_scale"]  # fmt: skip
    unused += ["attention_dropout", "max_position_embeddings"] if model_args.reference == "t5" else []
    unused += ["relative_attention_max_distance"] if model_args.reference != "t5" else []
    given = [name for name in unused if getattr(model_args, name) != getattr(defaults, name)]
    if model_args.cross_attention_logn_length not in (TRAINED, OFF):  # the default, or off: HF's models have neither
        given.append("cross_attention_logn_length")
    if model_args.position_embedding_type not in (defaults.position_embedding_type, own_encoding):
        given.append("position_embedding_type")
    if given:
        raise ValueError(
            f"`reference`={model_args.reference!r} builds HF's model with its own positions ({own_encoding}); "
            f"{', '.join(f'`{name}`' for name in given)} set LongCtx options it does not have. Drop them, or the reference."
        )
    ids = dict(
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    m = model_args
    if m.reference == "t5":
        config = T5Config(
            vocab_size=len(tokenizer), d_model=m.d_model, d_kv=m.d_model // m.num_heads, d_ff=m.d_ff,
            num_layers=m.encoder_layers, num_decoder_layers=m.decoder_layers, num_heads=m.num_heads,
            dropout_rate=m.dropout, relative_attention_max_distance=m.relative_attention_max_distance,
            feed_forward_proj="relu", **ids,
        )
    else:  # BART and Marian: the same layout; Marian checkpoints scale embeddings by sqrt(d_model)
        config_class = BartConfig if m.reference == "bart" else MarianConfig
        config = config_class(
            vocab_size=len(tokenizer), d_model=m.d_model, encoder_layers=m.encoder_layers,
            decoder_layers=m.decoder_layers, encoder_attention_heads=m.num_heads, decoder_attention_heads=m.num_heads,
            encoder_ffn_dim=m.d_ff, decoder_ffn_dim=m.d_ff, dropout=m.dropout, attention_dropout=m.attention_dropout,
            max_position_embeddings=m.max_position_embeddings or max_length, scale_embedding=m.reference == "marian",
            forced_eos_token_id=None,
            bos_token_id=None, **ids,
        )
    return _greedy(AutoModelForSeq2SeqLM.from_config(config, attn_implementation=m.attn_implementation))


def _greedy(model):
    model.generation_config.do_sample = False  # greedy decoding for every evaluation
    model.generation_config.num_beams = 1
    return model


def make_compute_metrics(tokenizer: PreTrainedTokenizerBase):
    """`compute_metrics` for generated predictions: exact match and token accuracy over decoded words."""
    exact_match, token_accuracy = load_metric("exact_match"), load_metric("token_accuracy")

    def compute_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
        predictions, references = decode_pairs(tokenizer, eval_pred.predictions, eval_pred.label_ids)
        scores = exact_match.compute(predictions=predictions, references=references)
        scores |= token_accuracy.compute(
            predictions=[p.split() for p in predictions], references=[r.split() for r in references]
        )
        return scores

    return compute_metrics


def decode_pairs(tokenizer, predictions, label_ids) -> tuple[list[str], list[str]]:
    """Decoded (prediction, reference) strings; Trainer pads ragged batches with -100, which decodes as pad."""
    predictions = np.where(predictions == -100, tokenizer.pad_token_id, predictions)
    label_ids = np.where(label_ids == -100, tokenizer.pad_token_id, label_ids)
    return (
        tokenizer.batch_decode(predictions, skip_special_tokens=True),
        tokenizer.batch_decode(label_ids, skip_special_tokens=True),
    )


class NonFiniteTrainingError(RuntimeError):
    """A training step produced a non-finite loss or gradient; raised before the optimizer applies it."""


class StopOnNonFinite(TrainerCallback):
    """Stops training with `NonFiniteTrainingError` at the first non-finite gradient norm, before the optimizer step.

    Trainer itself logs such steps as `'grad_norm': nan` next to a filtered loss (`logging_nan_inf_filter`), applies
    them and saves the broken weights as the final model. Raising before the step keeps the weights of the last
    good step; no checkpoint and no final model is written after it. With fp16's loss scaler an inf gradient is a
    step the scaler skips by design, so fp16 runs are left to the scaler.
    """

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if args.fp16 or model is None:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:  # e.g. DeepSpeed keeps the gradients in its own buffers
            logger.warning_once("StopOnNonFinite sees no gradients on the model's parameters: it cannot check them.")
            return
        norm = torch.nn.utils.get_total_norm(grads)
        if not torch.isfinite(norm):
            last = last_complete_checkpoint(args.output_dir) if os.path.isdir(args.output_dir or "") else None
            kept = f"the last checkpoint is {last}" if last else "no checkpoint was written"
            raise NonFiniteTrainingError(
                f"Training stopped at step {state.global_step + 1}: the gradient norm is {float(norm)} (the loss is not "
                f"finite). Nothing was saved after the last good step ({kept}; no final model). Lower "
                f"`learning_rate` (now {args.learning_rate:g}), keep gradient clipping on (`max_grad_norm`, now "
                f"{args.max_grad_norm}), or train in fp32."
            )


class LongCtxSeq2SeqTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer whose distributed evaluation drops the examples that sampling repeats to even out the ranks.

    Under torchrun every rank evaluates equally many full batches, topped up with repeats of the first examples.
    Seq2SeqTrainer gathers generated predictions with `accelerator.gather`, which keeps the repeats (transformers
    PR #27025 chose it so that `num_return_sequences > 1` loses nothing): a 4-example set came back as 64 predictions
    (2 ranks x a 32-row batch), skewing every metric. With one sequence per example, `gather_for_metrics` drops them.
    """

    def evaluation_loop(self, *args, **kwargs):
        gen_kwargs = getattr(self, "_gen_kwargs", {})
        if (gen_kwargs.get("num_return_sequences") or self.model.generation_config.num_return_sequences or 1) == 1:
            self.gather_function = self.accelerator.gather_for_metrics
        return super().evaluation_loop(*args, **kwargs)


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Seq2SeqTrainingArguments,
    callbacks: list[TrainerCallback] | None = None,
    model=None,
) -> dict:
    """Train on `data_args.task`, evaluate at every `eval_lengths`, save model + results to `output_dir`.

    `callbacks` are added to the Trainer's (e.g. `EarlyStoppingCallback`, or a recorder of the logged losses).
    `model`: continue from this model (e.g. one extended by `hf_longctx.conversion.extend`) instead of a fresh one built from
    `model_args`; it must use the synthetic tasks' vocabulary.
    Returns the results dict that is also written to `output_dir/results.json`.
    """
    if not training_args.predict_with_generate:
        raise ValueError(
            "`predict_with_generate` must be True: exact match is measured on generated sequences (greedy)."
        )
    resume_from_checkpoint = start_run(training_args)

    tokenizer = build_tokenizer()
    task = functools.partial(make_task, data_args.task, num_records=data_args.num_records)
    train_raw = task(data_args.num_train, data_args.train_min_len, data_args.train_max_len, data_args.dataset_seed)
    in_dist_raw = task(data_args.num_eval, data_args.train_min_len, data_args.train_max_len, data_args.dataset_seed + 1)
    eval_raw = {
        length: task(data_args.num_eval, length, length, data_args.dataset_seed + 2 + i)
        for i, length in enumerate(data_args.eval_lengths)
    }
    max_length = max([data_args.train_max_len, *data_args.eval_lengths])
    check_generation_length(training_args, max(_max_decoder_length(raw) for raw in eval_raw.values()))

    bound = model_args.randomized_positions_max_length
    if bound is not None and bound < data_args.train_max_len:
        raise ValueError(
            f"`randomized_positions_max_length`={bound} is below `train_max_len`={data_args.train_max_len}: positions "
            "are drawn below the bound, so the longer sources could not be trained with it. Give at least "
            f"{data_args.train_max_len} (better: the longest `eval_lengths`, {max_length})."
        )
    if model is None:
        model = build_model(model_args, tokenizer, max_length, trained_length=data_args.train_max_len)
    # The saved generation config answers the trained task: room for its longest in-distribution target. (A length
    # cap as `max_length`, not `max_new_tokens`: Seq2SeqTrainer writes the default max_length=20 into the model's
    # generation config during evaluation, and generate warns on every call when both are set.)
    model.generation_config.max_length = _max_decoder_length(in_dist_raw)
    logger.info(
        f"{data_args.task}: {model.num_parameters():,} parameters, {model_args.position_embedding_type} positions, "
        f"train lengths {data_args.train_min_len}-{data_args.train_max_len}, eval lengths {data_args.eval_lengths}"
    )

    trainer, train_output = fit(
        model,
        tokenizer,
        training_args,
        tokenize(train_raw, tokenizer),
        tokenize(in_dist_raw, tokenizer),
        make_compute_metrics(tokenizer),
        callbacks,
        resume_from_checkpoint,
    )

    results = {
        "task": data_args.task,
        "position_embedding_type": model.config.position_embedding_type if model_args.reference is None else None,
        "reference": model_args.reference,
        "model_args": asdict(model_args),
        "data_args": asdict(data_args),
        "num_parameters": model.num_parameters(),
        "train": {"global_step": train_output.global_step, **train_output.metrics},
        "launch": launch_record(training_args),
        "generation": generation_kwargs(training_args, None),  # max_length None: each length's longest target
        "eval": {},
    }
    for length, raw in eval_raw.items():
        results["eval"][str(length)] = evaluate_length(trainer, tokenizer, raw, length)
        logger.info(f"length {length}: exact match {results['eval'][str(length)]['exact_match']:.3f}")
    trainer.log({f"test_len{k}_exact_match": v["exact_match"] for k, v in results["eval"].items()})

    if trainer.is_world_process_zero():
        output_dir = Path(training_args.output_dir)
        (output_dir / RESULTS_JSON).write_text(json.dumps(results, indent=2, default=str) + "\n")
        (output_dir / RESULTS_TABLE).write_text(results_table(results))
        if isinstance(model.config, LongCtxConfig):  # the card describes LongCtx models; a reference gets none
            write_model_card(output_dir, results, training_args=training_args)  # README.md: metadata + results
    return results


def check_learning_rate(value: float, name: str) -> None:
    """Refuse a learning rate that cannot train: 0 leaves every weight where it started (the run would end "fine"),
    and a negative or NaN one is no rate at all. `name` is how the caller's user gave it (a flag or a field). Every
    run checks it in `start_run`; the CLI and the benchmarks also check their own flags up front, by their names,
    before a benchmark's first row trains."""
    if not value > 0:
        what = "trains nothing (the weights stay as initialised)" if value == 0 else "is not a learning rate"
        raise ValueError(f"{name} {value:g} {what}: give a positive number, e.g. 1e-3.")


def start_run(training_args: Seq2SeqTrainingArguments) -> str | None:
    """What every training run checks before any work (the output folder, the learning rate, the launch, the resume
    value), then the seed (the model is built before Trainer seeds anything); returns the checkpoint to resume from."""
    if training_args.output_dir is None:
        raise ValueError("`output_dir` is required: the model folder and results are written there.")
    check_learning_rate(training_args.learning_rate, "`learning_rate`")
    check_launch(training_args)
    resume_from_checkpoint = checkpoint_to_resume(training_args)
    set_seed(training_args.seed)
    return resume_from_checkpoint


def fit(model, tokenizer, training_args, train_dataset, eval_dataset, compute_metrics, callbacks, resume_from_checkpoint):
    """Train with `LongCtxSeq2SeqTrainer` (Seq2SeqTrainer with exact distributed evaluation; a non-finite loss stops
    the run) and save the final model; `eval_dataset` is the in-training check unless `eval_strategy` is "no".
    Returns (trainer, train() output)."""
    if model.config._attn_implementation == "flex_attention" and training_args.device.type == "cpu":
        raise ValueError(
            "`attn_implementation`=flex_attention has no backward on CPU (PyTorch's FlexAttention runs forward only "
            "there): train with sdpa or eager, and load the trained model with flex_attention on a GPU."
        )
    # Seq2SeqTrainer replaces the model's generation config with a given one: keep the model's special ids
    own_generation_config = copy.deepcopy(model.generation_config) if training_args.generation_config is not None else None
    trainer = LongCtxSeq2SeqTrainer(
        model=model,
        args=training_args,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset if training_args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        callbacks=[StopOnNonFinite(), *(callbacks or [])],
    )
    if own_generation_config is not None:
        for name in ("decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(trainer.model.generation_config, name) is None:  # a config of decoding choices only
                setattr(trainer.model.generation_config, name, getattr(own_generation_config, name))
    if resume_from_checkpoint is not None:
        check_checkpoint_model(resume_from_checkpoint, model)
    train_output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    save_final_model(trainer, training_args.output_dir)
    return trainer, train_output


def check_launch(training_args: Seq2SeqTrainingArguments) -> None:
    """A launcher that started several processes must get a data-parallel Trainer, not N trainings of one folder;
    and an FSDP or DeepSpeed launch must not turn into something else."""
    for env, what in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(env, "false").lower() == "true" and not torch.accelerator.is_available():
            # measured (accelerate 1.15, transformers 5.24): Trainer in its CPU mode builds accelerate's MULTI_CPU
            # state and wraps the model in plain DDP, whatever the launch config says; without it, no process group
            raise ValueError(
                f"accelerate launched {what} ({env}=true), but this machine has no accelerator: Trainer would run plain "
                "DDP on CPU instead (or each process alone), not what the config asks. Use "
                "configs/accelerate/ddp.yaml (or torchrun) on CPU; run the FSDP / DeepSpeed configs on GPUs."
            )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    asked = _processes_asked_of_accelerate()
    if asked > 1 and world_size == 1:
        raise ValueError(
            f"`accelerate launch --num_processes {asked}` started one process: with --cpu (or use_cpu in its config) "
            "accelerate runs several only through MPI. Launch with `torchrun --nproc_per_node N`, or `accelerate "
            "launch --config_file configs/accelerate/ddp.yaml --mixed_precision no` (see the README)."
        )
    if world_size > 1 and training_args.parallel_mode != ParallelMode.DISTRIBUTED:
        raise ValueError(
            f"The launcher started {world_size} processes (WORLD_SIZE={world_size}), but Trainer runs each alone "
            f"(parallel_mode={training_args.parallel_mode.value}): every rank would train on the whole data and write "
            "the same folder. On a machine without an accelerator pass `use_cpu=True` (`--use_cpu`; scripts/train.py "
            "sets it itself there), or launch one process."
        )


def launch_record(training_args: Seq2SeqTrainingArguments) -> dict:
    """How the run was launched: the launcher, the processes and the batch of one optimizer step over all of them."""
    return {
        "launcher": launched_by(),
        "world_size": training_args.world_size,
        "total_train_batch_size": training_args.per_device_train_batch_size
        * training_args.world_size
        * training_args.gradient_accumulation_steps,
    }


def _processes_asked_of_accelerate() -> int:
    """The `--num_processes N` of an `accelerate launch` that started this process directly (its parent's command
    line, where /proc has it); 0 when there is none or it cannot be read."""
    if "ACCELERATE_USE_CPU" not in os.environ:  # set by `accelerate launch` only
        return 0
    try:
        argv = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return 0
    if not any("accelerate" in arg for arg in argv[:3]):
        return 0
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--num_processes=") else None
        if arg == "--num_processes" and i + 1 < len(argv):
            value = argv[i + 1]
        if value is not None and value.isdigit():
            return int(value)
    return 0


TRAINING_ARGS_JSON = "training_args.json"


def save_final_model(trainer: Seq2SeqTrainer, output_dir: str) -> None:
    """Weights, config + code, tokenizer and generation config; the training arguments as JSON, not as the pickle
    `training_args.bin` that `Trainer.save_model` writes (the folder is safetensors and JSON only; checkpoints keep
    HF's own files, which resuming reads)."""
    trainer.save_model(output_dir)
    if trainer.is_world_process_zero():
        Path(output_dir, TRAINING_ARGS_NAME).unlink(missing_ok=True)
        # default=str: a `generation_config` given as a path (HfArgumentParser makes it a Path)
        Path(output_dir, TRAINING_ARGS_JSON).write_text(json.dumps(trainer.args.to_dict(), indent=2, default=str) + "\n")


def is_complete_checkpoint(folder: Path) -> bool:
    """A checkpoint Trainer can resume from: it writes `trainer_state.json` last, after weights and optimizer."""
    return (folder / TRAINER_STATE_NAME).is_file()


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-<step>` folder in `output_dir` that is complete; newer incomplete ones (a run killed
    while saving) are skipped with a warning."""
    folders = [p for p in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir()]
    steps = {p: int(p.name.rsplit("-", 1)[1]) for p in folders if p.name.rsplit("-", 1)[1].isdigit()}
    for folder in sorted(steps, key=steps.get, reverse=True):
        if is_complete_checkpoint(folder):
            return str(folder)
        logger.warning(f"Skipping {folder}: no {TRAINER_STATE_NAME}, so it was not written to the end.")
    return None


def checkpoint_to_resume(training_args: Seq2SeqTrainingArguments) -> str | None:
    """The checkpoint folder `--resume_from_checkpoint` names; `last` means the newest `checkpoint-*` in `output_dir`.

    (`TrainingArguments.resume_from_checkpoint` is only a slot for scripts: Trainer reads it only when it is passed
    to `trainer.train`.)
    """
    resume = training_args.resume_from_checkpoint
    if resume is None:
        return None
    if resume == "last":
        last = last_complete_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
        if last is None:
            raise ValueError(
                f"`resume_from_checkpoint`=last, but `output_dir` ({training_args.output_dir}) holds no complete "
                "checkpoint-* folder; train with `--save_strategy steps` to write checkpoints, or name a checkpoint folder."
            )
        return last
    if not os.path.isdir(resume):
        raise ValueError(f"`resume_from_checkpoint`={resume!r} is not a folder; name a checkpoint-* folder or `last`.")
    if not is_complete_checkpoint(Path(resume)):
        raise ValueError(
            f"`resume_from_checkpoint`={resume!r} has no {TRAINER_STATE_NAME}: it was not written to the end. Name "
            "another checkpoint, or `last` for the newest complete one."
        )
    return resume


# config keys that say where and how a model was saved, not which model it is
NOT_THE_MODEL = ("transformers_version", "_name_or_path", "architectures", "auto_map", "dtype")


def check_checkpoint_model(checkpoint: str, model) -> None:
    """A checkpoint resumes only into the model it was trained as: every config field that differs from the model
    this run built is named (Trainer would load what fits, warn about the rest as it does on any resume, and train a
    different model; or fail deep in torch on a size)."""
    saved = AutoConfig.from_pretrained(checkpoint)
    built = model.config
    if type(saved) is not type(built):
        differ = {"model_type": (saved.model_type, built.model_type)}
    else:
        saved_fields, built_fields = saved.to_dict(), built.to_dict()
        differ = {
            key: (saved_fields.get(key), built_fields.get(key))
            for key in sorted(saved_fields.keys() | built_fields.keys())
            if key not in NOT_THE_MODEL and saved_fields.get(key) != built_fields.get(key)
        }
    if differ:
        raise ValueError(
            f"{Path(checkpoint).name} holds a model with "
            + ", ".join(f"{key}={old!r} (this run builds {new!r})" for key, (old, new) in differ.items())
            + ": resume with the model arguments it was trained with (and the same --config_overrides), or train into "
            "another --output_dir."
        )


def generation_kwargs(args: Seq2SeqTrainingArguments, max_length: int | None) -> dict:
    """What a final evaluation passes `predict` / `evaluate`: greedy, `max_length` tokens, except where the user
    gave `generation_num_beams` / `generation_max_length`, or a `generation_config` that sets `num_beams` /
    `max_length` (Seq2SeqTrainer reads the arguments only when nothing is passed, and the config is the model's)."""
    given = {}
    if args.generation_config is not None:
        given = Seq2SeqTrainer.load_generation_config(args.generation_config).to_diff_dict()
    num_beams = args.generation_num_beams or given.get("num_beams") or 1
    if not args.generation_max_length and given.get("max_new_tokens"):  # the config's length, as generate reads it
        return {"max_new_tokens": given["max_new_tokens"], "num_beams": num_beams}
    return {"max_length": args.generation_max_length or given.get("max_length") or max_length, "num_beams": num_beams}


def check_generation_length(args: Seq2SeqTrainingArguments, needed: int) -> None:
    """A decoding length the user gave (`generation_max_length`, or its `generation_config`'s `max_length`) that
    cuts a final-evaluation answer short is refused: a cut answer scores 0."""
    kwargs = generation_kwargs(args, None)
    # max_new_tokens counts the generated tokens, max_length the decoder start too
    max_length = kwargs["max_new_tokens"] + 1 if "max_new_tokens" in kwargs else kwargs["max_length"]
    if max_length is not None and max_length < needed:
        given = (
            f"`generation_max_length`={max_length}"
            if args.generation_max_length
            else f"`generation_config`'s max_new_tokens={kwargs['max_new_tokens']}"
            if "max_new_tokens" in kwargs
            else f"`generation_config`'s max_length={max_length}"
        )
        raise ValueError(
            f"{given} cuts the final evaluation short: the longest target of `eval_lengths` needs {needed} decoder "
            "tokens (start + target + EOS), and a cut answer scores 0. Raise it, or drop it (each length then "
            "decodes as long as its longest target)."
        )


def evaluate_length(trainer: Seq2SeqTrainer, tokenizer, raw: Dataset, length: int) -> dict:
    """Generation on the examples of one source length (greedy, as long as the longest target, unless the training
    arguments' `generation_num_beams` / `generation_max_length` say otherwise): metrics, and exact match by depth."""
    output = trainer.predict(
        tokenize(raw, tokenizer),
        metric_key_prefix=f"test_len{length}",
        **generation_kwargs(trainer.args, _max_decoder_length(raw)),
    )
    if len(output.predictions) != len(raw):  # e.g. repeats from distributed sampling (LongCtxSeq2SeqTrainer)
        raise RuntimeError(f"{len(output.predictions)} predictions for {len(raw)} examples at length {length}.")
    prefix = f"test_len{length}_"
    scores = {k.removeprefix(prefix): v for k, v in output.metrics.items() if k.startswith(prefix)}
    result = {
        "exact_match": scores["exact_match"],
        "token_accuracy": scores["token_accuracy"],
        "num_samples": len(raw),
        "runtime_s": scores.get("runtime"),
    }
    if min(raw["depth"]) >= 0:  # tasks with a needle
        predictions, references = decode_pairs(tokenizer, output.predictions, output.label_ids)
        result["exact_match_by_depth"] = exact_match_by_depth(predictions, references, raw["depth"])
    return result


def results_table(results: dict) -> str:
    """A short markdown table of `results` (exact match per length, and by needle depth when the task has one)."""
    train_max = results["data_args"]["train_max_len"]
    with_depth = any("exact_match_by_depth" in r for r in results["eval"].values())
    bins = depth_bin_labels()
    header = ["length", "x train max", "exact match", "token acc.", "n"] + (
        [f"EM depth {b}" for b in bins] if with_depth else []
    )
    lines = [
        f"# {results['task']}, {results.get('reference') or results['position_embedding_type']} positions "
        f"(trained at {results['data_args']['train_min_len']}-{train_max} tokens, "
        f"{results['train']['global_step']} steps, {results['train'].get('train_runtime', float('nan')):.0f} s)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for length, r in results["eval"].items():
        row = [
            length,
            f"{int(length) / train_max:.1f}",
            f"{r['exact_match']:.3f}",
            f"{r['token_accuracy']:.3f}",
            str(r["num_samples"]),
        ]
        if with_depth:
            row += ["-" if v is None else f"{v:.2f}" for v in r.get("exact_match_by_depth", [None] * DEPTH_BINS)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _max_decoder_length(raw: Dataset) -> int:
    """Decoder tokens `generate` needs for the longest target: start token + target + EOS."""
    return max(len(target.split()) for target in raw["target"]) + 2


__all__ = [
    "ModelArguments",
    "DataArguments",
    "train",
    "LongCtxSeq2SeqTrainer",
    "build_model",
    "checkpoint_to_resume",
    "check_launch",
    "NonFiniteTrainingError",
    "StopOnNonFinite",
    "save_final_model",
    "load_metric",
    "make_compute_metrics",
    "results_table",
    "tokenize",
    "METRICS_DIR",
]

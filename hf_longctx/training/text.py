"""Training on real text with HF's `Seq2SeqTrainer`: denoising (T5 span corruption) or source -> target columns.

`train_text(model_args, text_args, training_args)`:
1. loads the text (`data.text.load_text_dataset`: a local .txt/.json/.jsonl/.csv/.tsv file or a datasets name)
   and checks it: the columns exist, rows are not all empty;
2. loads the tokenizer from `tokenizer_name`, or trains a byte-level BPE of `tokenizer_vocab_size` on the text;
3. builds the examples: span-corrupted chunks of `chunk_length` tokens, or tokenized (source, target) pairs, and
   refuses targets longer than `max_target_length` before any model exists;
4. holds out `num_eval_examples` examples, builds a fresh model (`training.trainer.build_model`), trains;
5. saves the model folder (weights, config + modeling code, tokenizer, generation config) to `output_dir`, and
   the held-out scores (loss; with `predict_with_generate` also exact match, token accuracy, chrF and BLEU of the
   greedy outputs, without special tokens) in `results.json`; the model card README.md (`hub/model_card.py`) sums up both.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from transformers import (
    AutoTokenizer,
    EvalPrediction,
    PreTrainedTokenizerBase,
    Seq2SeqTrainingArguments,
    TrainerCallback,
)
from transformers.utils import logging

from ..data.text import (
    check_columns,
    check_target_length,
    chunk_token_ids,
    corrupted_lengths,
    load_text_dataset,
    nonempty_strings,
    seq2seq_dataset,
    span_corruption_dataset,
    span_counts,
    train_bpe_tokenizer,
)
from ..hub.model_card import write_model_card
from .trainer import RESULTS_JSON, ModelArguments, build_model, fit, generation_kwargs, load_metric, start_run

logger = logging.get_logger(__name__)
CHRF_KEYS = ("chrf", "bleu")  # the chrf module also echoes its settings (char_order, ...)


@dataclass
class TextDataArguments:
    """Where the text comes from, which objective, which tokenizer, and the token budgets."""

    text_file: str | None = field(default=None, metadata={"help": "A local .txt / .json / .jsonl / .csv / .tsv file."})
    dataset_name: str | None = field(
        default=None, metadata={"help": "A datasets name (needs the hub) or a local folder of data files."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of `dataset_name`."})
    dataset_split: str = field(default="train", metadata={"help": "Split of `dataset_name` to use."})
    text_column: str = field(default="text", metadata={"help": "Denoising: the column holding the text."})
    source_column: str | None = field(
        default=None, metadata={"help": "Source -> target training: the source column (with `target_column`)."}
    )
    target_column: str | None = field(default=None, metadata={"help": "Source -> target training: the target column."})
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "A saved tokenizer folder; default: train a byte-level BPE on the text."}
    )
    tokenizer_vocab_size: int = field(default=8000, metadata={"help": "Vocabulary of the trained BPE."})
    num_sentinels: int = field(
        default=100, metadata={"help": "Sentinel tokens <extra_id_i> of the trained BPE (one per noise span)."}
    )
    chunk_length: int = field(default=128, metadata={"help": "Denoising: text tokens per example, before corruption."})
    noise_density: float = field(default=0.15, metadata={"help": "Denoising: fraction of tokens dropped."})
    mean_noise_span_length: float = field(default=3.0, metadata={"help": "Denoising: mean length of a dropped span."})
    max_source_length: int | None = field(
        default=512, metadata={"help": "Source -> target: longer sources are cut here (EOS included)."}
    )
    max_target_length: int = field(
        default=128, metadata={"help": "Longest target (EOS included) the decoder is trained on; see `long_targets`."}
    )
    long_targets: str = field(
        default="error",
        metadata={
            "help": "Source -> target: what a target longer than `max_target_length` gets: error (stop, naming how many), "
            "truncate (cut at max_target_length, EOS kept) or drop (leave the example out; logged).",
            "choices": ["error", "truncate", "drop"],
        },
    )
    num_eval_examples: int = field(default=64, metadata={"help": "Examples held out for evaluation."})
    max_train_examples: int | None = field(default=None, metadata={"help": "Use at most this many training examples."})
    # Not `dataset_seed`: DataArguments (synthetic tasks) has one, and the two may share a parser one day.
    text_seed: int = field(default=1234, metadata={"help": "Seed of the span corruption and the held-out split."})

    def __post_init__(self):
        if (self.text_file is None) == (self.dataset_name is None):
            raise ValueError("Pass exactly one of `text_file` (a local file) or `dataset_name`.")
        if (self.source_column is None) != (self.target_column is None):
            raise ValueError(
                "`source_column` and `target_column` go together (source -> target training); "
                "pass neither for denoising on `text_column`."
            )
        if not 0.0 < self.noise_density < 1.0:
            raise ValueError(f"`noise_density` must be in (0, 1), got {self.noise_density}.")
        if self.mean_noise_span_length < 1.0:
            raise ValueError(f"`mean_noise_span_length` must be at least 1, got {self.mean_noise_span_length}.")
        if self.chunk_length < 2:
            raise ValueError(
                f"`chunk_length` must be at least 2 (one kept and one dropped token), got {self.chunk_length}."
            )
        if self.long_targets not in ("error", "truncate", "drop"):
            raise ValueError(f"`long_targets`={self.long_targets!r}: use error, truncate or drop.")
        if self.long_targets != "error" and self.source_column is None:
            raise ValueError(
                f"`long_targets`={self.long_targets!r} is for source -> target training; a denoising target is the "
                "dropped spans of its chunk, so size it with `chunk_length` / `noise_density` instead."
            )
        if self.num_eval_examples < 1:
            raise ValueError(f"`num_eval_examples` must be at least 1, got {self.num_eval_examples}.")
        if self.max_train_examples is not None and self.max_train_examples < 1:
            raise ValueError(
                f"`max_train_examples`={self.max_train_examples} leaves nothing to train on: give at least 1, or drop it "
                "to use every training example."
            )
        # the tokenizer reads a max_length of 0 as "no limit"; one token is the EOS alone
        if self.max_source_length is not None and self.max_source_length < 2:
            raise ValueError(
                f"`max_source_length`={self.max_source_length} leaves no source token before the EOS: give at least 2, "
                "or drop it (`--max_source_length None`) to keep whole sources."
            )
        if self.max_target_length < 2:
            raise ValueError(
                f"`max_target_length`={self.max_target_length} leaves no target token before the EOS: give at least 2."
            )

    @property
    def objective(self) -> str:
        return "seq2seq" if self.source_column is not None else "denoising"


# The flags that only one objective reads, and those that shape the BPE trained when no tokenizer is given
OBJECTIVE_FLAGS = {
    "denoising": ("text_column", "chunk_length", "noise_density", "mean_noise_span_length"),
    "seq2seq": ("max_source_length", "long_targets"),
}
TOKENIZER_TRAINING_FLAGS = ("tokenizer_vocab_size", "num_sentinels")
DATASET_FLAGS = ("dataset_config_name", "dataset_split")  # of `dataset_name`, not of a local `text_file`


def check_text_flags(text_args: TextDataArguments, given: set[str]) -> None:
    """A flag the user gave (`given`: the names on the command line) that this run's objective, tokenizer or data
    source never reads is refused, naming it and what would read it."""
    other = "seq2seq" if text_args.objective == "denoising" else "denoising"
    idle = [(name, f"the {other} objective" + (" (--source_column / --target_column)" if other == "seq2seq" else ""))
            for name in OBJECTIVE_FLAGS[other] if name in given]  # fmt: skip
    if text_args.tokenizer_name is not None:
        idle += [(name, "a trained BPE (no --tokenizer_name)") for name in TOKENIZER_TRAINING_FLAGS if name in given]
    if text_args.text_file is not None:
        idle += [(name, "--dataset_name") for name in DATASET_FLAGS if name in given]
    if idle:
        raise ValueError(
            "; ".join(f"--{name} is read only by {what}" for name, what in idle)
            + f", and this run is {text_args.objective} on "
            + (f"--text_file {text_args.text_file}" if text_args.text_file else f"--dataset_name {text_args.dataset_name}")
            + (f" with --tokenizer_name {text_args.tokenizer_name}" if text_args.tokenizer_name else "")
            + ": drop "
            + ("it." if len(idle) == 1 else "them.")
        )


def build_text_examples(text_args: TextDataArguments, tokenizer: PreTrainedTokenizerBase | None = None):
    """(tokenizer, examples): the checked text, the tokenizer (given, loaded or trained) and the tokenized examples.

    Every error about the data is raised here, before a model is built.
    """
    raw = load_text_dataset(
        text_args.text_file, text_args.dataset_name, text_args.dataset_config_name, text_args.dataset_split
    )
    origin = (
        f"`text_file` {text_args.text_file!r}" if text_args.text_file else f"`dataset_name` {text_args.dataset_name!r}"
    )
    if text_args.objective == "seq2seq":
        columns = {"source_column": text_args.source_column, "target_column": text_args.target_column}
    else:
        columns = {"text_column": text_args.text_column}
    check_columns(raw, columns, origin)
    raw = nonempty_strings(raw, list(columns.values()), origin)

    if tokenizer is None and text_args.tokenizer_name is not None:
        tokenizer = AutoTokenizer.from_pretrained(text_args.tokenizer_name)
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError(
                f"`tokenizer_name` {text_args.tokenizer_name!r} has no pad or no EOS token; the model pads with one "
                "and stops at the other. Add them to the tokenizer, or leave `tokenizer_name` unset to train one."
            )
    if tokenizer is None:
        corpus = (text for column in columns.values() for text in raw[column])
        tokenizer = train_bpe_tokenizer(corpus, text_args.tokenizer_vocab_size, text_args.num_sentinels)
        logger.info(f"Trained a byte-level BPE of {len(tokenizer)} tokens on {origin}.")

    if text_args.objective == "seq2seq":
        examples = seq2seq_dataset(
            raw,
            tokenizer,
            text_args.source_column,
            text_args.target_column,
            text_args.max_source_length,
            text_args.max_target_length if text_args.long_targets == "truncate" else None,
        )
        if text_args.long_targets == "drop":
            kept = examples.filter(lambda ex: len(ex["labels"]) <= text_args.max_target_length)
            if len(kept) == 0:
                raise ValueError(
                    f"Every target of {origin} is longer than `max_target_length`={text_args.max_target_length}: "
                    "`long_targets`=drop leaves nothing. Raise `max_target_length`."
                )
            logger.warning(
                f"Dropped {len(examples) - len(kept)} of {len(examples)} examples whose target is longer than "
                f"`max_target_length`={text_args.max_target_length} tokens (`long_targets`=drop)."
            )
            examples = kept
        fix = (
            "Raise `max_target_length` (a longer decoder sequence), or pass `long_targets` truncate (cut them) or drop "
            "(leave those examples out)."
        )
    else:
        examples = span_corruption_dataset(
            chunk_token_ids(raw, tokenizer, text_args.text_column, text_args.chunk_length),
            tokenizer,
            text_args.noise_density,
            text_args.mean_noise_span_length,
            text_args.text_seed,
        )
        if len(examples) == 0:
            raise ValueError(
                f"{origin} holds fewer than `chunk_length`={text_args.chunk_length} tokens of text: no complete chunk "
                "to corrupt. Lower `chunk_length` or give more text."
            )
        num_noise, num_spans = span_counts(
            text_args.chunk_length, text_args.noise_density, text_args.mean_noise_span_length
        )
        fix = (
            f"A {text_args.chunk_length}-token chunk drops {num_noise} tokens in {num_spans} spans, so its target has "
            f"{corrupted_lengths(text_args.chunk_length, text_args.noise_density, text_args.mean_noise_span_length)[1]} "
            "tokens: lower `chunk_length` or `noise_density`, or raise `max_target_length`."
        )
    check_target_length(examples, text_args.max_target_length, fix)
    return tokenizer, examples


def make_text_compute_metrics(tokenizer: PreTrainedTokenizerBase):
    """Exact match, token accuracy and chrF / BLEU of greedy outputs, scored without special tokens.

    Sentinels are dropped with pad and EOS before scoring: `<extra_id_0> ... <extra_id_1> ...` is free to predict
    and, left in, lifts chrF and BLEU of an untrained denoiser to about 50. What is scored is the dropped text.
    """
    exact_match, token_accuracy, chrf = load_metric("exact_match"), load_metric("token_accuracy"), load_metric("chrf")
    special = set(tokenizer.all_special_ids) | {-100}

    def clean(rows) -> list[list[int]]:
        """Token ids up to the first EOS, without special tokens and -100 (generate starts with pad)."""
        cleaned = []
        for row in np.asarray(rows).tolist():
            end = row.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in row else len(row)
            cleaned.append([t for t in row[:end] if t not in special])
        return cleaned

    def compute_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
        predictions, references = clean(eval_pred.predictions), clean(eval_pred.label_ids)
        pred_text, ref_text = tokenizer.batch_decode(predictions), tokenizer.batch_decode(references)
        scores = exact_match.compute(predictions=pred_text, references=ref_text)
        scores |= token_accuracy.compute(predictions=predictions, references=references)
        chrf_bleu = chrf.compute(predictions=pred_text, references=ref_text)
        return scores | {k: v for k, v in chrf_bleu.items() if k in CHRF_KEYS}

    return compute_metrics


def train_text(
    model_args: ModelArguments,
    text_args: TextDataArguments,
    training_args: Seq2SeqTrainingArguments,
    callbacks: list[TrainerCallback] | None = None,
) -> dict:
    """Train a fresh model on `text_args`' text, evaluate on the held-out examples, save model + results.json."""
    resume_from_checkpoint = start_run(training_args)

    tokenizer, examples = build_text_examples(text_args)
    if len(examples) <= text_args.num_eval_examples:
        raise ValueError(
            f"Only {len(examples)} examples: holding out `num_eval_examples`={text_args.num_eval_examples} leaves none "
            "to train on. Lower `num_eval_examples` or give more text."
        )
    split = examples.train_test_split(test_size=text_args.num_eval_examples, seed=text_args.text_seed)
    train_set, eval_set = split["train"], split["test"]
    if text_args.max_train_examples is not None:
        train_set = train_set.select(range(min(text_args.max_train_examples, len(train_set))))

    longest_source = max(len(ids) for ids in examples["input_ids"])
    longest_target = max(len(ids) for ids in examples["labels"])
    # the longest training source is the trained length: the base of `cross_attention_logn_length` (when
    # `cross_attention_logn_length` is `trained`), as `train()` uses its longest training source
    model = build_model(model_args, tokenizer, max(longest_source, longest_target), trained_length=longest_source)
    check_model_fits(model.config, longest_source, longest_target)
    model.generation_config.max_length = longest_target + 1  # decoder start + the longest target (EOS included)
    logger.info(
        f"{text_args.objective} on {text_args.text_file or text_args.dataset_name}: {len(train_set)} training and "
        f"{len(eval_set)} held-out examples, sources up to {longest_source} tokens, targets up to {longest_target}; "
        f"{model.num_parameters():,} parameters, {model_args.position_embedding_type} positions"
    )

    compute_metrics = make_text_compute_metrics(tokenizer) if training_args.predict_with_generate else None
    trainer, train_output = fit(
        model, tokenizer, training_args, train_set, eval_set, compute_metrics, callbacks, resume_from_checkpoint
    )

    eval_kwargs = generation_kwargs(training_args, longest_target + 1) if training_args.predict_with_generate else {}
    scores = trainer.evaluate(eval_set, metric_key_prefix="heldout", **eval_kwargs)
    results = {
        "objective": text_args.objective,
        "position_embedding_type": model.config.position_embedding_type,
        "model_args": asdict(model_args),
        "text_args": asdict(text_args),
        "generation": eval_kwargs or None,
        "num_parameters": model.num_parameters(),
        "vocab_size": len(tokenizer),
        "num_train_examples": len(train_set),
        "train": {"global_step": train_output.global_step, **train_output.metrics},
        "eval": {k.removeprefix("heldout_"): v for k, v in scores.items()},
    }
    if trainer.is_world_process_zero():
        (Path(training_args.output_dir) / RESULTS_JSON).write_text(json.dumps(results, indent=2, default=str) + "\n")
        # A held-out source for the card's loading snippet: sentinels kept, EOS dropped (the tokenizer adds it).
        example = [t for t in eval_set[0]["input_ids"] if t not in (tokenizer.eos_token_id, tokenizer.pad_token_id)]
        write_model_card(training_args.output_dir, results, training_args, example_source=tokenizer.decode(example))
    return results


def check_model_fits(config, longest_source: int, longest_target: int) -> None:
    """`learned` position tables must hold the longest source (encoder) and the longest target (the decoder reads
    the start token + the target minus its EOS): a ValueError naming `max_position_embeddings` otherwise."""
    decoder_positions = config.decoder_position_embedding_type or config.position_embedding_type
    for stack, kind, longest, what in (
        ("encoder", config.position_embedding_type, longest_source, "sources"),
        ("decoder", decoder_positions, longest_target, "targets"),
    ):
        if kind == "learned" and longest > config.max_position_embeddings:
            raise ValueError(
                f"The longest of the {what} has {longest} tokens but the `learned` {stack} has "
                f"`max_position_embeddings`={config.max_position_embeddings} rows: raise `max_position_embeddings` "
                f"(or leave it unset to fit the data), or shorten the {what}."
            )


__all__ = ["TextDataArguments", "build_text_examples", "make_text_compute_metrics", "train_text", "check_model_fits"]

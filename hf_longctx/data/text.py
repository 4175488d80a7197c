"""Real text for hf_longctx: local files or hub datasets, a byte-level BPE tokenizer, and T5 span corruption.

Two objectives, both ending in `input_ids` / `attention_mask` / `labels` (EOS-terminated token ids) for
`DataCollatorForSeq2Seq`:
    denoising: the text column is tokenized, concatenated and cut into chunks of `chunk_length` tokens; each
        chunk is span-corrupted as in T5 (Raffel et al. 2020, arXiv 1910.10683, section 3.1.4): about
        `noise_density` of its tokens, in spans of mean length `mean_noise_span_length`, are replaced in the
        input by one sentinel each, and the target lists each dropped span after its sentinel:
            text   : Thank you for inviting me to your party last week .
            input  : Thank you <extra_id_0> me to your party <extra_id_1> week . </s>
            labels : <extra_id_0> for inviting <extra_id_1> last </s>
    seq2seq: a source column and a target column, tokenized as they are.

Bad input fails here, before a model is built: a missing file (`FileNotFoundError`), an unsupported file type,
a missing column (the message lists the columns there are), an empty dataset, and a target longer than
`max_target_length` (`ValueError`s naming the limit and the fix).

The tokenizer (`train_bpe_tokenizer`) is a byte-level BPE trained with `tokenizers`: any text encodes without
unknown tokens and decodes back to the same string. Ids 0/1/2 are pad/EOS/unk as in `data/tokenization.py` and
`LongCtxConfig`'s defaults; the sentinels `<extra_id_0>`, `<extra_id_1>`, ... follow (ids 3, 4, ...).
"""

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from datasets import Dataset, load_dataset
from datasets.exceptions import DatasetGenerationError
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.utils import logging

from .tasks import DEPTH_BINS, PASSKEY_DIGITS
from .tokenization import SPECIAL_TOKENS, wrap_tokenizer

logger = logging.get_logger(__name__)

# File suffix -> `datasets` builder (and its keyword arguments).
FILE_BUILDERS: dict[str, tuple[str, dict]] = {
    ".txt": ("text", {}),
    ".text": ("text", {}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
}
BYTE_ALPHABET = len(pre_tokenizers.ByteLevel.alphabet())  # 256: every byte is a token, so nothing is unknown


def sentinel_token(i: int) -> str:
    return f"<extra_id_{i}>"


# ------------------------------------------------------------------------------------------------ loading


def load_text_dataset(
    text_file: str | Path | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    split: str = "train",
) -> Dataset:
    """One split of a local text/JSON/JSONL/CSV/TSV file, or of `load_dataset(dataset_name, dataset_config_name)`.

    A .txt file gives one row per line in a column `text`; JSON(L) and CSV give their own columns. A hub name
    needs the hub to be reachable (HF_HUB_OFFLINE unset); a local folder of data files works as a name offline.
    """
    if (text_file is None) == (dataset_name is None):
        raise ValueError(
            "Pass exactly one of `text_file` (a local file) or `dataset_name` (a datasets name or folder)."
        )
    if text_file is not None:
        path = Path(text_file)
        if not path.is_file():
            raise FileNotFoundError(f"`text_file`: no file {str(path)!r} (absolute: {path.resolve()}).")
        suffix = path.suffix.lower()
        if suffix not in FILE_BUILDERS:
            raise ValueError(
                f"`text_file` {str(path)!r}: unsupported file type {suffix!r}; supported: {', '.join(FILE_BUILDERS)}. "
                "For another format, load it with `datasets` and save it as JSON lines."
            )
        builder, kwargs = FILE_BUILDERS[suffix]
        origin = f"`text_file` {str(path)!r}"
        if path.stat().st_size == 0:
            raise ValueError(f"{origin} is empty: there is nothing to train on.")
        try:
            dataset = load_dataset(builder, data_files=str(path), split="train", **kwargs)
        except DatasetGenerationError as err:  # a malformed file; the cause says where
            raise ValueError(f"{origin} could not be read as {builder}: {err.__cause__ or err}") from err
        except ValueError as err:  # a CSV with a header and no rows
            if "corresponds to no data" not in str(err):
                raise
            raise ValueError(f"{origin} holds no rows: there is nothing to train on.") from err
    else:
        dataset = load_dataset(dataset_name, dataset_config_name, split=split)
        origin = f"`dataset_name` {dataset_name!r} (split {split!r})"
    if len(dataset) == 0:
        raise ValueError(f"{origin} holds no rows: there is nothing to train on.")
    return dataset


def check_columns(dataset: Dataset, columns: dict[str, str], origin: str = "the dataset") -> None:
    """Raise a ValueError naming each argument whose column is missing, and listing the columns there are."""
    missing = [f"`{arg}`={name!r}" for arg, name in columns.items() if name not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{origin} has no column {', '.join(missing)}; its columns are: {', '.join(dataset.column_names)}."
        )


def nonempty_strings(dataset: Dataset, columns: Sequence[str], origin: str = "the dataset") -> Dataset:
    """Rows whose `columns` all hold non-blank strings (blank lines of a .txt file, empty CSV cells go)."""
    kept = dataset.filter(
        lambda batch: [
            all(isinstance(v, str) and v.strip() for v in row) for row in zip(*(batch[c] for c in columns), strict=True)
        ],
        batched=True,
        desc="Dropping empty rows",
    )
    if len(kept) == 0:
        raise ValueError(f"{origin}: every row has an empty {' or '.join(map(repr, columns))}: nothing to train on.")
    if len(kept) < len(dataset):
        logger.info(f"{origin}: dropped {len(dataset) - len(kept)} of {len(dataset)} rows with empty text.")
    return kept


# ---------------------------------------------------------------------------------------------- tokenizer


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = 8000, num_sentinels: int = 100, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on `texts`: pad=0, EOS=1, unk=2, `<extra_id_i>` = 3 + i, then merges.

    Every encoded sequence ends with EOS (as in `data/tokenization.py`). `unk` never occurs (all 256 bytes are in the
    vocabulary); it is there so that the ids match `LongCtxConfig`'s defaults and other tokenizers of the project.
    """
    specials = SPECIAL_TOKENS + [sentinel_token(i) for i in range(num_sentinels)]
    if vocab_size < len(specials) + BYTE_ALPHABET:
        raise ValueError(
            f"`vocab_size`={vocab_size} is too small: a byte-level BPE needs {BYTE_ALPHABET} byte tokens plus "
            f"{len(specials)} special tokens ({num_sentinels} sentinels); raise it above {len(specials) + BYTE_ALPHABET}."
        )
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return wrap_tokenizer(backend, extra_special_tokens=specials[len(SPECIAL_TOKENS) :])


def sentinel_ids(tokenizer: PreTrainedTokenizerBase, num_spans: int) -> list[int]:
    """Ids of `<extra_id_0>` ... `<extra_id_{num_spans-1}>`; a ValueError when the tokenizer lacks them."""
    ids = [tokenizer.convert_tokens_to_ids(sentinel_token(i)) for i in range(num_spans)]
    missing = [sentinel_token(i) for i, t in enumerate(ids) if t is None or t == tokenizer.unk_token_id]
    if missing:
        raise ValueError(
            f"The tokenizer has no sentinel token {missing[0]} ({len(missing)} of the {num_spans} that span corruption "
            "needs are missing): train one with `train_bpe_tokenizer(num_sentinels=...)` or add them with "
            "`tokenizer.add_special_tokens({'extra_special_tokens': [...]})`."
        )
    return ids


# -------------------------------------------------------------------------------------- span corruption


def span_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) of a `length`-token chunk, as T5 rounds them (at least one of each)."""
    num_noise = min(max(round(length * noise_density), 1), length - 1)
    num_spans = max(round(num_noise / mean_noise_span_length), 1)
    return num_noise, min(num_spans, length - num_noise)  # every noise span needs a kept span before it


def corrupted_lengths(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(encoder tokens, decoder tokens) of one corrupted chunk, EOS included on both sides."""
    num_noise, num_spans = span_counts(length, noise_density, mean_noise_span_length)
    return length - num_noise + num_spans + 1, num_noise + num_spans + 1


def random_spans_noise_mask(
    length: int, noise_density: float, mean_noise_span_length: float, rng: np.random.Generator
) -> np.ndarray:
    """Boolean (length,) mask, True = noise; kept and noise spans alternate, starting with a kept one.

    T5's `random_spans_noise_mask` (t5.data.preprocessors; HF's run_t5_mlm_flax.py): split the noise tokens into
    `num_spans` non-empty spans and the kept tokens into as many, each split uniformly at random, and interleave.
    """
    num_noise, num_spans = span_counts(length, noise_density, mean_noise_span_length)

    def random_segmentation(num_items: int, num_segments: int) -> np.ndarray:
        # a uniformly random composition of num_items into num_segments positive parts
        cuts = np.sort(rng.choice(num_items - 1, num_segments - 1, replace=False)) + 1
        return np.diff(np.concatenate([[0], cuts, [num_items]]))

    noise_lengths = random_segmentation(num_noise, num_spans)
    kept_lengths = random_segmentation(length - num_noise, num_spans)
    span_lengths = np.stack([kept_lengths, noise_lengths], axis=1).reshape(-1)  # kept, noise, kept, noise, ...
    return np.repeat(np.arange(2 * num_spans) % 2 == 1, span_lengths)


def span_corrupt(
    ids: Sequence[int], mask: np.ndarray, sentinels: Sequence[int], eos_id: int
) -> tuple[list[int], list[int]]:
    """(input ids, label ids) of one chunk: each noise span becomes its sentinel in the input, and follows it in the
    labels; both end with EOS."""
    ids = np.asarray(ids)
    starts = np.flatnonzero(mask & ~np.concatenate([[False], mask[:-1]]))  # first token of each noise span
    span_index = np.cumsum(np.isin(np.arange(len(ids)), starts)) - 1  # noise token -> its span number
    sentinel_of = np.asarray(sentinels)[span_index.clip(min=0)]
    first = np.zeros(len(ids), dtype=bool)
    first[starts] = True
    # input: kept tokens, plus the sentinel at the start of each noise span
    inputs = np.where(first, sentinel_of, ids)[~mask | first]
    # labels: the sentinel before each noise span's first token, then the span
    labels = np.stack([np.where(first, sentinel_of, -1), np.where(mask, ids, -1)], axis=1).reshape(-1)
    labels = labels[labels >= 0]
    return inputs.tolist() + [eos_id], labels.tolist() + [eos_id]


def chunk_token_ids(dataset: Dataset, tokenizer, text_column: str, chunk_length: int) -> Dataset:
    """Column `ids`: the rows tokenized, joined by a newline token, and cut into `chunk_length`-token chunks.

    As in T5 and HF's run_t5_mlm_flax.py, text runs on across rows (within each block of 1000 rows; a newline marks
    where a row ended, as in the file) and the incomplete chunk at the end of a block is dropped. Sentinel or EOS
    strings inside the text are split like any text (`split_special_tokens`), so a chunk holds no special token.
    """
    newline = tokenizer("\n", add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def chunk(batch):
        rows = tokenizer(batch[text_column], add_special_tokens=False, split_special_tokens=True)["input_ids"]
        ids = [t for row in rows for t in row + newline]
        usable = len(ids) - len(ids) % chunk_length
        return {"ids": [ids[i : i + chunk_length] for i in range(0, usable, chunk_length)]}

    return dataset.map(chunk, batched=True, remove_columns=dataset.column_names, desc="Tokenizing and chunking")


def span_corruption_dataset(
    chunks: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    seed: int = 0,
) -> Dataset:
    """input_ids / attention_mask / labels from the `ids` chunks, one fixed corruption per chunk.

    Chunk i draws its mask from `np.random.default_rng([seed, i])`: the result depends on the seed and the chunk
    only, not on batch sizes or worker counts.
    """
    longest = max(len(ids) for ids in chunks["ids"]) if len(chunks) else 0
    sentinels = sentinel_ids(tokenizer, span_counts(max(longest, 2), noise_density, mean_noise_span_length)[1])

    def corrupt(batch, indices):
        out = {"input_ids": [], "attention_mask": [], "labels": []}
        for ids, index in zip(batch["ids"], indices, strict=True):
            mask = random_spans_noise_mask(
                len(ids), noise_density, mean_noise_span_length, np.random.default_rng([seed, index])
            )
            inputs, labels = span_corrupt(ids, mask, sentinels, tokenizer.eos_token_id)
            out["input_ids"].append(inputs)
            out["attention_mask"].append([1] * len(inputs))
            out["labels"].append(labels)
        return out

    return chunks.map(
        corrupt, batched=True, with_indices=True, remove_columns=chunks.column_names, desc="Span corruption"
    )


def uncorrupt(input_ids: Sequence[int], labels: Sequence[int], sentinels: Sequence[int], eos_id: int) -> list[int]:
    """The original chunk from a corrupted (input, labels) pair: each sentinel in the input is replaced by the
    tokens that follow the same sentinel in the labels. (A readable reference for tests and for inspecting data.)"""
    sentinel_set = set(sentinels)
    spans, current = {}, None
    for t in labels:
        if t == eos_id:
            break
        if t in sentinel_set:
            current = spans.setdefault(t, [])
        elif current is not None:
            current.append(t)
    out = []
    for t in input_ids:
        if t == eos_id:
            break
        out.extend(spans[t] if t in sentinel_set else [t])
    return out


# ---------------------------------------------------------------------------------------------- seq2seq


def seq2seq_dataset(
    dataset: Dataset,
    tokenizer,
    source_column: str,
    target_column: str,
    max_source_length: int | None,
    max_target_length: int | None = None,
) -> Dataset:
    """input_ids / attention_mask / labels from the two columns; sources longer than `max_source_length` (EOS
    included) are cut there, and targets at `max_target_length` when it is given (else they are kept whole and
    `check_target_length` refuses those that do not fit)."""

    def encode(batch):
        encoded = tokenizer(
            batch[source_column], truncation=max_source_length is not None, max_length=max_source_length
        )
        encoded["labels"] = tokenizer(
            batch[target_column], truncation=max_target_length is not None, max_length=max_target_length
        )["input_ids"]
        return encoded

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="Tokenizing")


def check_target_length(dataset: Dataset, max_target_length: int, fix: str) -> int:
    """The longest `labels` (EOS included); a ValueError naming `max_target_length` and `fix` when it is longer."""
    lengths = [len(labels) for labels in dataset["labels"]]
    longest = max(lengths)
    if longest > max_target_length:
        too_long = sum(n > max_target_length for n in lengths)
        raise ValueError(
            f"{too_long} of {len(lengths)} targets are longer than the decoder takes: the longest has {longest} tokens "
            f"(EOS included) and `max_target_length` is {max_target_length}. {fix}"
        )
    return longest


# ------------------------------------------------------------------------------------ next tokens after a context


def document_token_ids(texts: Iterable[str], tokenizer) -> list[list[int]]:
    """Each document as one run of token ids, without special tokens (a document's text may hold none)."""
    return tokenizer(list(texts), add_special_tokens=False, split_special_tokens=True)["input_ids"]


def target_windows(
    documents: Sequence[Sequence[int]], min_context: int, target_length: int, num_windows: int, seed: int
) -> list[tuple[int, int]]:
    """`num_windows` (document, start) places of a target of `target_length` tokens with at least `min_context`
    tokens before it in its document, drawn uniformly over all such places; a ValueError when there are none."""
    room = [max(0, len(ids) - min_context - target_length + 1) for ids in documents]
    if sum(room) == 0:
        longest = max((len(ids) for ids in documents), default=0)
        raise ValueError(
            f"No document has {min_context} tokens of context before a {target_length}-token target (the longest "
            f"has {longest} tokens); lower the longest context length or use longer documents."
        )
    rng = np.random.default_rng(seed)
    places = rng.choice(sum(room), size=num_windows, replace=sum(room) < num_windows)
    bounds = np.cumsum(room)
    windows = []
    for place in places:
        doc = int(np.searchsorted(bounds, place, side="right"))
        windows.append((doc, min_context + int(place - (bounds[doc - 1] if doc else 0))))
    return windows


def context_target_dataset(
    documents: Sequence[Sequence[int]],
    windows: Sequence[tuple[int, int]],
    context_lengths: int | Sequence[int],
    target_length: int,
    eos_id: int,
) -> Dataset:
    """input_ids = the `n` tokens before each window (n: one length for all, or one per window) + EOS; labels = the
    window's `target_length` tokens + EOS. The same windows at several `n` give targets that differ only in context."""
    lengths = [context_lengths] * len(windows) if isinstance(context_lengths, int) else list(context_lengths)
    rows = {"input_ids": [], "labels": []}
    for (doc, start), n in zip(windows, lengths, strict=True):
        ids = documents[doc]
        if n > start:
            raise ValueError(f"A window at token {start} of document {doc} has fewer than {n} tokens before it.")
        rows["input_ids"].append(list(ids[start - n : start]) + [eos_id])
        rows["labels"].append(list(ids[start : start + target_length]) + [eos_id])
    return Dataset.from_dict(rows)


# ------------------------------------------------------------------------------------ a needle in a real haystack

NEEDLE = " The secret code is {code}."  # Kamradt 2023's form, with a random PASSKEY_DIGITS-digit code
NEEDLE_QUESTION = " What is the secret code?"
WORD_START_MARKS = ("\u0120", "\u2581")  # a token that starts a word: byte-level BPE's "Ġ", SentencePiece's "▁"


def needle_min_length(tokenizer) -> int:
    """A length every `needle_haystack_dataset` source fits in, whatever the code: the needle's words, at most one
    token per digit and one for the space before them, the question, one passage token and EOS."""
    words, end = NEEDLE.split(" {code}")
    fixed = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in (words, end, NEEDLE_QUESTION)]
    return sum(map(len, fixed)) + PASSKEY_DIGITS + 1 + 2


def needle_haystack_dataset(
    documents: Sequence[Sequence[int]],
    tokenizer,
    lengths: Sequence[int],
    seed: int,
    stratify_depth: bool = False,
) -> Dataset:
    """One example per entry of `lengths`: a passage of a document (a uniformly drawn place) with the NEEDLE
    sentence inserted at a random depth, at the start of a word (a token marked as one, WORD_START_MARKS; a
    tokenizer that marks none is refused), and NEEDLE_QUESTION
    after it; the source is exactly `n` tokens with its EOS. The target is the code's digits + EOS.

    Columns: input_ids, labels, code (the digits), depth (where the needle starts, as a fraction of the passage:
    0 = first, 1 = last). `stratify_depth`: example i's depth is drawn in bin i % DEPTH_BINS, so every bin gets its
    share (a bin too narrow for a word start takes a place inside a word). A length without room for the needle and the question is a ValueError naming both."""
    rng = np.random.default_rng(seed)
    question = tokenizer(NEEDLE_QUESTION, add_special_tokens=False)["input_ids"]
    word_starts = {i for token, i in tokenizer.get_vocab().items() if token.startswith(WORD_START_MARKS)}
    if not word_starts:
        raise ValueError(
            f"{type(tokenizer).__name__} marks no token as a word start (byte-level BPE's 'Ġ', SentencePiece's '▁'), "
            "so the needle would go inside words: use such a tokenizer (`train_bpe_tokenizer` makes one)."
        )
    rows = {"input_ids": [], "labels": [], "code": [], "depth": []}
    for i, n in enumerate(lengths):
        code = "".join(str(d) for d in rng.integers(0, 10, size=PASSKEY_DIGITS))
        needle = tokenizer(NEEDLE.format(code=code), add_special_tokens=False)["input_ids"]
        room = n - 1 - len(needle) - len(question)
        if room < 1:
            raise ValueError(
                f"A source of {n} tokens has no room for the needle ({len(needle)} tokens) and the question "
                f"({len(question)}) around a passage: use sources of at least {len(needle) + len(question) + 2} tokens."
            )
        passage = _passage(documents, room, rng)
        first, last = 0, room  # the needle's first token goes at passage[at]: depth at / room
        if stratify_depth:  # depths in [bin / DEPTH_BINS, (bin + 1) / DEPTH_BINS), the last bin closed
            bin_ = i % DEPTH_BINS
            first = math.ceil(bin_ * room / DEPTH_BINS)
            last = room if bin_ == DEPTH_BINS - 1 else max(first, math.ceil((bin_ + 1) * room / DEPTH_BINS) - 1)
        places = range(first, min(last, room) + 1)
        at = int(rng.choice([p for p in places if p in (0, room) or passage[p] in word_starts] or places))
        rows["input_ids"].append(passage[:at] + needle + passage[at:] + question + [tokenizer.eos_token_id])
        rows["labels"].append(tokenizer(code, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
        rows["code"].append(code)
        rows["depth"].append(at / room)
    return Dataset.from_dict(rows)


def _passage(documents: Sequence[Sequence[int]], length: int, rng: np.random.Generator) -> list[int]:
    """`length` consecutive tokens of one document, the place drawn uniformly over every document long enough."""
    room = np.array([max(0, len(ids) - length + 1) for ids in documents])
    if room.sum() == 0:
        raise ValueError(f"No document has {length} tokens for a haystack; use shorter sources or longer documents.")
    place = int(rng.integers(room.sum()))
    doc = int(np.searchsorted(np.cumsum(room), place, side="right"))
    start = place - int(room[:doc].sum())
    return list(documents[doc][start : start + length])


__all__ = [
    "FILE_BUILDERS",
    "load_text_dataset",
    "check_columns",
    "nonempty_strings",
    "train_bpe_tokenizer",
    "sentinel_token",
    "sentinel_ids",
    "span_counts",
    "corrupted_lengths",
    "random_spans_noise_mask",
    "span_corrupt",
    "uncorrupt",
    "chunk_token_ids",
    "span_corruption_dataset",
    "seq2seq_dataset",
    "check_target_length",
    "document_token_ids",
    "target_windows",
    "context_target_dataset",
    "NEEDLE",
    "NEEDLE_QUESTION",
    "needle_haystack_dataset",
    "needle_min_length",
]

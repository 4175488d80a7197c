"""Synthetic long-context tasks, generated from a seed and returned as `datasets.Dataset`.

Every task is text: whitespace-separated words from the small vocabulary of `tokenization.py` (this folder) (one word = one
token), so a `Dataset` can be inspected by eye and tokenized with the ordinary `tokenizer(source,
text_target=target)` call.

Columns (the same for every task):
    source (`str`): the encoder input, without the EOS the tokenizer appends.
    target (`str`): the expected output, without EOS.
    length (`int`): encoder input length in tokens, EOS included: `len(source.split()) + 1`. This is the length
        that `min_len`/`max_len` and the evaluation lengths talk about.
    position (`int`): word index in `source` where the needle starts (passkey: the `KEY` marker; kv_recall: the
        first letter of the queried key in its pair); -1 for tasks without a needle (copy, reverse).
    depth (`float`): `position` relative to the places the needle could have gone, in [0, 1] (0 = start of the
        source, 1 = as late as possible); -1.0 for tasks without a needle.

Tasks: the `TASKS` registry (passkey, kv_recall, multikey, copy, reverse); each entry's `description` says what
its sources and targets are (the model card of a model trained on it quotes it). On multikey: with random-letter
filler, as passkey has, HF T5 at d_model 64 did not learn it either (0.60 after 4000 steps: the key's letters then
also stand in the filler); with `.` filler it is solved at step 2500.
"""

import functools
import itertools
import random
import string
from collections.abc import Callable
from typing import NamedTuple

from datasets import Dataset

DIGITS = list(string.digits)
LETTERS = list(string.ascii_lowercase)
SYMBOLS = LETTERS + DIGITS  # alphabet of copy / reverse
KEY_MARKER, KV_SEP, QUERY_MARKER, FILLER = "KEY", "=", "?", "."
MARKERS = [KEY_MARKER, KV_SEP, QUERY_MARKER, FILLER]
DEPTH_BINS = 5  # exact match by needle depth: [0, 0.2), [0.2, 0.4), ..., [0.8, 1.0]

PASSKEY_DIGITS = 5
KV_KEY_LETTERS, KV_VALUE_DIGITS = 2, 3
KV_PAIR_TOKENS = KV_KEY_LETTERS + 1 + KV_VALUE_DIGITS  # "k k = v v v"
KV_QUERY_TOKENS = 1 + KV_KEY_LETTERS  # "? k k"
KV_KEYS = [list(key) for key in itertools.product(LETTERS, repeat=KV_KEY_LETTERS)]
KV_MAX_PAIRS = len(KV_KEYS)  # distinct two-letter keys
MULTIKEY_RECORD_TOKENS = 1 + KV_KEY_LETTERS + 1 + PASSKEY_DIGITS  # "KEY k k = d d d d d"
DEFAULT_NUM_RECORDS = 2


class Example(NamedTuple):
    source: list[str]
    target: list[str]
    position: int  # -1 without a needle
    depth: float  # -1.0 without a needle


def _passkey(rng: random.Random, num_words: int) -> Example:
    needle = [KEY_MARKER] + rng.choices(DIGITS, k=PASSKEY_DIGITS)
    num_filler = num_words - len(needle)
    position = rng.randint(0, num_filler)  # inclusive: the needle may also close the source
    filler = rng.choices(LETTERS, k=num_filler)
    source = filler[:position] + needle + filler[position:]
    return Example(source, needle[1:], position, position / num_filler if num_filler else 0.0)


def _kv_recall(rng: random.Random, num_words: int) -> Example:
    num_pairs, num_filler = divmod(num_words - KV_QUERY_TOKENS, KV_PAIR_TOKENS)
    keys = rng.sample(KV_KEYS, num_pairs)
    values = [rng.choices(DIGITS, k=KV_VALUE_DIGITS) for _ in range(num_pairs)]
    queried = rng.randrange(num_pairs)
    source = [FILLER] * num_filler
    for key, value in zip(keys, values, strict=True):
        source += key + [KV_SEP] + value
    source += [QUERY_MARKER] + keys[queried]
    position = num_filler + queried * KV_PAIR_TOKENS
    return Example(source, values[queried], position, queried / (num_pairs - 1) if num_pairs > 1 else 0.0)


def _multikey(rng: random.Random, num_words: int, num_records: int) -> Example:
    num_filler = num_words - num_records * MULTIKEY_RECORD_TOKENS - KV_QUERY_TOKENS
    keys = rng.sample(KV_KEYS, num_records)
    values = [rng.choices(DIGITS, k=PASSKEY_DIGITS) for _ in range(num_records)]
    slots = sorted(rng.randint(0, num_filler) for _ in range(num_records))  # filler words before each record
    filler = [FILLER] * num_filler
    queried = rng.randrange(num_records)
    source, start = [], 0
    for i, (slot, key, value) in enumerate(zip(slots, keys, values, strict=True)):
        source += filler[start:slot]
        if i == queried:
            position = len(source)
        source += [KEY_MARKER] + key + [KV_SEP] + value
        start = slot
    source += filler[start:] + [QUERY_MARKER] + keys[queried]
    return Example(source, values[queried], position, slots[queried] / num_filler if num_filler else 0.0)


def _copy(rng: random.Random, num_words: int) -> Example:
    source = rng.choices(SYMBOLS, k=num_words)
    return Example(source, list(source), -1, -1.0)


def _reverse(rng: random.Random, num_words: int) -> Example:
    source = rng.choices(SYMBOLS, k=num_words)
    return Example(source, source[::-1], -1, -1.0)


class TaskSpec(NamedTuple):
    generate: Callable[..., Example]  # (rng, number of source words[, num_records]) -> Example
    min_len: int  # shortest encoder input (EOS included) that holds one instance (with one record)
    max_len: int | None  # longest, where the task runs out of distinct keys
    needs: str  # what the shortest instance holds, for error messages
    description: str  # what a source and its target are, in a sentence (the model card's)
    record_tokens: int = 0  # tasks with `num_records`: tokens each record beyond the first adds to `min_len`


TASKS: dict[str, TaskSpec] = {
    "passkey": TaskSpec(
        _passkey,
        PASSKEY_DIGITS + 2,
        None,
        f"KEY + {PASSKEY_DIGITS} digits + EOS",
        "random letters as filler with `KEY d d d d d` at a random depth; the answer is the 5 digits (passkey "
        "retrieval, Mohtashami & Jaggi 2023, arXiv 2305.16300).",
    ),
    "kv_recall": TaskSpec(
        _kv_recall,
        KV_PAIR_TOKENS + KV_QUERY_TOKENS + 1,
        KV_MAX_PAIRS * KV_PAIR_TOKENS + KV_QUERY_TOKENS + KV_PAIR_TOKENS,
        f"one {KV_PAIR_TOKENS}-token pair + a {KV_QUERY_TOKENS}-token query + EOS",
        "pairs `k k = v v v` (two-letter keys, all distinct, three-digit values), then `? k k`; the answer is the "
        "value of the queried key. Up to five `.` fillers at the start make the length exact.",
    ),
    "multikey": TaskSpec(
        _multikey,
        MULTIKEY_RECORD_TOKENS + KV_QUERY_TOKENS + 1,
        None,
        f"`num_records` {MULTIKEY_RECORD_TOKENS}-token records + a {KV_QUERY_TOKENS}-token query + EOS",
        "`num_records` records `KEY k k = d d d d d` (distinct two-letter keys, five digits) at random depths of `.` "
        "filler, then `? k k` naming one of them; the answer is the digits of the queried record (a multi-key "
        "needle: several needles compete and only the query says which one is meant).",
        record_tokens=MULTIKEY_RECORD_TOKENS,
    ),
    "copy": TaskSpec(
        _copy, 2, None, "one symbol + EOS", "a random sequence of letters and digits; the answer is the same sequence."
    ),
    "reverse": TaskSpec(
        _reverse, 2, None, "one symbol + EOS", "a random sequence of letters and digits; the answer is it reversed."
    ),
}


def source_lengths(name: str, num_records: int | None = None) -> tuple[int, int | None, str]:
    """(shortest, longest or None, what the shortest holds): the encoder lengths (EOS included) task `name` can fill.
    Raises ValueError for an unknown task or a `num_records` the task cannot take."""
    if name not in TASKS:
        raise ValueError(f"`name`={name!r} is not a known task; valid tasks: {', '.join(TASKS)}.")
    spec = TASKS[name]
    if not spec.record_tokens:
        if num_records is not None:
            with_records = [task for task, s in TASKS.items() if s.record_tokens]
            raise ValueError(
                f"`num_records`={num_records} means nothing to task {name!r}; only {', '.join(with_records)} have "
                "records. Leave it unset."
            )
        return spec.min_len, spec.max_len, spec.needs
    num_records = DEFAULT_NUM_RECORDS if num_records is None else num_records
    if not 1 <= num_records <= KV_MAX_PAIRS:
        raise ValueError(
            f"`num_records` must be between 1 and {KV_MAX_PAIRS} (the distinct two-letter keys) for task {name!r}, "
            f"got {num_records}."
        )
    return spec.min_len + (num_records - 1) * spec.record_tokens, spec.max_len, spec.needs


def make_task(
    name: str, num_samples: int, min_len: int, max_len: int, seed: int = 0, num_records: int | None = None
) -> Dataset:
    """`num_samples` examples of task `name` with encoder lengths uniform in [min_len, max_len] (EOS included).

    `num_records`: records per source of `multikey` (default 2); refused for tasks without records.
    The same arguments always give the same dataset (a private `random.Random(seed)`, no global state).
    Raises ValueError naming the argument when `name` is unknown, `num_samples` < 1, `min_len` > `max_len`, or a
    length cannot hold one instance of the task.
    """
    needed, longest, needs = source_lengths(name, num_records)
    spec = TASKS[name]
    generate = spec.generate
    if spec.record_tokens:
        generate = functools.partial(spec.generate, num_records=DEFAULT_NUM_RECORDS if num_records is None else num_records)
    if num_samples < 1:
        raise ValueError(f"`num_samples` must be at least 1 (an empty dataset trains nothing), got {num_samples}.")
    if min_len > max_len:
        raise ValueError(f"`min_len` ({min_len}) must not exceed `max_len` ({max_len}).")
    if min_len < needed:
        raise ValueError(
            f"`min_len`={min_len} is too short for task {name!r}: a source needs at least {needed} tokens "
            f"({needs}); raise `min_len`."
        )
    if longest is not None and max_len > longest:
        raise ValueError(
            f"`max_len`={max_len} is too long for task {name!r}: it runs out of distinct keys past {longest} "
            "tokens; lower `max_len`."
        )

    rng = random.Random(seed)
    columns: dict[str, list] = {"source": [], "target": [], "length": [], "position": [], "depth": []}
    for _ in range(num_samples):
        length = rng.randint(min_len, max_len)
        example = generate(rng, length - 1)  # the tokenizer appends EOS
        columns["source"].append(" ".join(example.source))
        columns["target"].append(" ".join(example.target))
        columns["length"].append(length)
        columns["position"].append(example.position)
        columns["depth"].append(example.depth)
    return Dataset.from_dict(columns)


__all__ = ["TASKS", "make_task", "DIGITS", "LETTERS", "SYMBOLS", "MARKERS"]


def depth_bin_labels() -> list[str]:
    """The DEPTH_BINS equal bins of needle depth, as tables and plots label them ("0.0-0.2", ...)."""
    return [f"{i / DEPTH_BINS:.1f}-{(i + 1) / DEPTH_BINS:.1f}" for i in range(DEPTH_BINS)]


"""Real text: file formats, the byte-level BPE, T5 span corruption, bad input, and a few training steps on the shipped
corpus (data/devils_dictionary.*, public domain; data/README.md). About 30 s on 2 CPU cores."""

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq, Seq2SeqTrainingArguments

from hf_longctx.data.text import (
    FILE_BUILDERS,
    check_target_length,
    chunk_token_ids,
    corrupted_lengths,
    load_text_dataset,
    random_spans_noise_mask,
    sentinel_ids,
    sentinel_token,
    span_corrupt,
    span_corruption_dataset,
    span_counts,
    train_bpe_tokenizer,
    uncorrupt,
)
from hf_longctx.data.tokenization import build_tokenizer
from hf_longctx.training.text import TextDataArguments, build_text_examples, train_text
from hf_longctx.training.trainer import ModelArguments

REPO = Path(__file__).resolve().parent.parent
CORPUS_TXT = REPO / "data" / "devils_dictionary.txt"
CORPUS_JSONL = REPO / "data" / "devils_dictionary.jsonl"
NUM_SENTINELS = 20


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return CORPUS_TXT.read_text().splitlines()


@pytest.fixture(scope="module")
def bpe(corpus):
    return train_bpe_tokenizer(corpus, vocab_size=600, num_sentinels=NUM_SENTINELS)


def reference_uncorrupt(input_ids, labels, sentinels, eos_id):
    """Readable reference: the input's kept runs and the labels' dropped runs, both split at sentinels, interleaved."""

    def runs(ids):  # [(sentinel or None, tokens up to the next sentinel)]
        out = [(None, [])]
        for t in ids[: ids.index(eos_id)]:
            if t in sentinels:
                out.append((t, []))
            else:
                out[-1][1].append(t)
        return out

    kept, dropped = runs(list(input_ids)), dict(runs(list(labels))[1:])
    assert runs(list(labels))[0] == (None, [])  # the labels start with a sentinel
    original = list(kept[0][1])
    for sentinel, tokens in kept[1:]:
        original += dropped[sentinel] + tokens
    return original


# -------------------------------------------------------------------------------------------- noise mask


@pytest.mark.parametrize("length", [2, 3, 7, 64, 500])
@pytest.mark.parametrize("density, mean_span", [(0.15, 3.0), (0.5, 1.0), (0.3, 8.0)])
def test_noise_mask_has_t5_counts_and_alternates(length, density, mean_span):
    num_noise, num_spans = span_counts(length, density, mean_span)
    for seed in range(5):
        mask = random_spans_noise_mask(length, density, mean_span, np.random.default_rng(seed))
        assert mask.shape == (length,) and mask.sum() == num_noise
        assert abs(num_noise - length * density) <= max(0.5, 1 - length * density)  # rounded, at least one
        starts = np.flatnonzero(mask & ~np.r_[False, mask[:-1]])
        assert len(starts) == num_spans and not mask[0]  # a kept span comes first, so spans never merge


def test_noise_density_and_span_length_hold_on_average():
    masks = [random_spans_noise_mask(101, 0.15, 3.0, np.random.default_rng(s)) for s in range(200)]
    spans = [len(run) for m in masks for run in np.split(m, np.flatnonzero(np.diff(m)) + 1) if run[0]]
    assert np.mean(masks) == pytest.approx(0.15, abs=0.01)
    assert np.mean(spans) == pytest.approx(3.0, abs=0.25)
    first_positions = np.mean([np.flatnonzero(m)[0] for m in masks])
    assert 5 < first_positions < 50  # where spans fall varies with the seed


# ------------------------------------------------------------------------------------------ corruption


def test_span_corrupt_small_example():
    ids, mask = [10, 11, 12, 13, 14, 15, 16], np.array([0, 1, 1, 0, 0, 1, 0], dtype=bool)
    inputs, labels = span_corrupt(ids, mask, sentinels=[3, 4], eos_id=1)
    assert inputs == [10, 3, 13, 14, 4, 16, 1]
    assert labels == [3, 11, 12, 4, 15, 1]
    assert uncorrupt(inputs, labels, [3, 4], 1) == ids


@pytest.fixture(scope="module")
def chunks(corpus, bpe):
    from datasets import Dataset

    return chunk_token_ids(Dataset.from_dict({"text": corpus[:120]}), bpe, "text", chunk_length=57)


def test_span_corruption_reconstructs_the_original(chunks, bpe):
    corrupted = span_corruption_dataset(chunks, bpe, noise_density=0.15, mean_noise_span_length=3.0, seed=7)
    assert len(corrupted) == len(chunks) > 20
    num_noise, num_spans = span_counts(57, 0.15, 3.0)
    sentinels = sentinel_ids(bpe, NUM_SENTINELS)
    expected_lengths = corrupted_lengths(57, 0.15, 3.0)
    for original, row in zip(chunks["ids"], corrupted, strict=True):
        inputs, labels = row["input_ids"], row["labels"]
        assert (len(inputs), len(labels)) == expected_lengths and row["attention_mask"] == [1] * len(inputs)
        assert inputs[-1] == labels[-1] == bpe.eos_token_id
        # the same sentinels, in the same order (<extra_id_0>, <extra_id_1>, ...), once each side
        assert [t for t in inputs if t in sentinels] == [t for t in labels if t in sentinels] == sentinels[:num_spans]
        assert len(labels) - num_spans - 1 == num_noise  # the dropped tokens, as many as the density says
        assert reference_uncorrupt(inputs, labels, set(sentinels), bpe.eos_token_id) == original
        assert uncorrupt(inputs, labels, sentinels, bpe.eos_token_id) == original


def test_span_corruption_is_deterministic_per_seed(chunks, bpe):
    first = span_corruption_dataset(chunks, bpe, seed=3).to_dict()
    assert first == span_corruption_dataset(chunks, bpe, seed=3).to_dict()
    assert first != span_corruption_dataset(chunks, bpe, seed=4).to_dict()


def test_too_few_sentinels_for_the_spans_raise(chunks, corpus):
    few = train_bpe_tokenizer(corpus[:50], vocab_size=400, num_sentinels=2)  # a 57-token chunk has 3 noise spans
    with pytest.raises(ValueError, match="no sentinel token <extra_id_2>"):
        span_corruption_dataset(chunks, few)


def test_text_that_spells_a_special_token_is_plain_text(bpe):
    from datasets import Dataset

    text = "a tale of <extra_id_0> and </s> and <pad> told twice. " * 4
    ids = chunk_token_ids(Dataset.from_dict({"text": [text]}), bpe, "text", chunk_length=8)["ids"]
    assert all(t >= 3 + NUM_SENTINELS for chunk in ids for t in chunk)  # no pad, EOS, unk or sentinel id


# ------------------------------------------------------------------------------------------- tokenizer


def test_bpe_ids_match_the_config_defaults(bpe):
    assert (bpe.pad_token_id, bpe.eos_token_id, bpe.unk_token_id) == (0, 1, 2)
    assert [bpe.convert_tokens_to_ids(sentinel_token(i)) for i in (0, 1, NUM_SENTINELS - 1)] == [
        3,
        4,
        NUM_SENTINELS + 2,
    ]
    assert len(bpe) == 600


@pytest.mark.parametrize(
    "text", ["ABATIS, n. Rubbish in front of a fort.", "  two  spaces,\ttab\nnewline ", "café, naïve, 日本語 — ok? ✓"]
)
def test_bpe_round_trips_any_text(bpe, text):
    ids = bpe(text)["input_ids"]
    assert ids[-1] == bpe.eos_token_id and bpe.unk_token_id not in ids
    assert bpe.decode(ids, skip_special_tokens=True) == text


def test_bpe_round_trips_the_corpus(bpe, corpus):
    encoded = bpe(corpus[:200])["input_ids"]
    assert bpe.batch_decode(encoded, skip_special_tokens=True) == corpus[:200]
    num_bytes = sum(len(line.encode()) + 1 for line in corpus[:200])  # + EOS
    assert sum(map(len, encoded)) < 0.6 * num_bytes  # the merges compress (600 tokens: about 2.2 bytes a token)


def test_bpe_saves_and_loads_with_auto_tokenizer(bpe, tmp_path):
    bpe.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "IMPOSTOR n. A rival aspirant to public honors."
    assert loaded(text)["input_ids"] == bpe(text)["input_ids"]
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.unk_token_id, len(loaded)) == (0, 1, 2, len(bpe))
    assert sentinel_ids(loaded, NUM_SENTINELS) == sentinel_ids(bpe, NUM_SENTINELS)
    assert loaded.decode([3, 1], skip_special_tokens=True) == ""  # sentinels are special tokens
    batch = loaded(["a b c", "a"], padding=True)
    assert batch["input_ids"][1][-1] == 0  # right padding with id 0


def test_bpe_vocab_too_small_raises(corpus):
    with pytest.raises(ValueError, match="`vocab_size`=200 is too small"):
        train_bpe_tokenizer(corpus[:10], vocab_size=200)


def test_tokenizer_without_sentinels_raises():
    with pytest.raises(ValueError, match="no sentinel token <extra_id_0>"):
        sentinel_ids(build_tokenizer(), 3)


# ------------------------------------------------------------------------------------------ file formats


def write_formats(tmp_path: Path, records: list[dict]) -> dict[str, Path]:
    """The same records as .jsonl, .json (a list), .csv and .tsv, and their `text` fields as .txt."""
    paths = {s: tmp_path / f"records{s}" for s in (".jsonl", ".json", ".csv", ".tsv", ".txt")}
    paths[".jsonl"].write_text("".join(json.dumps(r) + "\n" for r in records))
    paths[".json"].write_text(json.dumps(records))
    for suffix, delimiter in ((".csv", ","), (".tsv", "\t")):
        with paths[suffix].open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]), delimiter=delimiter)
            writer.writeheader()
            writer.writerows(records)
    paths[".txt"].write_text("".join(r["definition"] + "\n" for r in records))
    return paths


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return [json.loads(line) for line in CORPUS_JSONL.read_text().splitlines()[:12]]


@pytest.mark.parametrize("suffix", sorted(FILE_BUILDERS.keys() - {".text"}))
def test_every_file_format_loads(tmp_path, records, suffix):
    dataset = load_text_dataset(write_formats(tmp_path, records)[suffix])
    if suffix == ".txt":
        assert dataset["text"] == [r["definition"] for r in records]
    else:
        assert dataset.column_names == ["word", "pos", "definition"]
        if suffix in (".csv", ".tsv"):  # an empty CSV cell reads as None (pandas)
            records = [{k: v if v != "" else None for k, v in r.items()} for r in records]
        assert dataset.to_list() == records  # quotes, commas and tabs in definitions survive


def test_a_dataset_name_can_be_a_local_folder(tmp_path, records):
    write_formats(tmp_path, records)
    (tmp_path / "records.txt").unlink()  # one kind of file in the folder
    for suffix in (".json", ".csv", ".tsv"):
        (tmp_path / f"records{suffix}").unlink()
    assert load_text_dataset(dataset_name=str(tmp_path))["definition"] == [r["definition"] for r in records]


def test_the_shipped_corpus_loads():
    text, jsonl = load_text_dataset(CORPUS_TXT), load_text_dataset(CORPUS_JSONL)
    assert len(text) == len(jsonl) == 999 and text[0]["text"].startswith("ABASEMENT, n.")
    assert jsonl[0] == {"word": "ABASEMENT", "pos": "n.", "definition": text[0]["text"].removeprefix("ABASEMENT, n. ")}


# ------------------------------------------------------------------------------------------- bad input


def text_args(**overrides) -> TextDataArguments:
    values = dict(text_file=str(CORPUS_TXT), tokenizer_vocab_size=600, num_sentinels=NUM_SENTINELS, chunk_length=32)
    values.update(overrides)
    return TextDataArguments(**values)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file .*nowhere.txt"):
        build_text_examples(text_args(text_file=str(tmp_path / "nowhere.txt")))


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ("", ".txt", "is empty"),
        ("\n  \n\n", ".txt", "every row has an empty 'text'"),
        ("word,definition\n", ".csv", "holds no rows"),
        ('{"text": "a"\n', ".jsonl", "could not be read as json"),
        ("<entry/>", ".xml", "unsupported file type '.xml'"),
    ],
)
def test_empty_or_unreadable_files_raise(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        build_text_examples(text_args(text_file=str(path)))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(), "no column `text_column`='text'; its columns are: word, pos, definition"),
        (dict(source_column="definition", target_column="headword"), "no column `target_column`='headword'; its"),
    ],
)
def test_missing_column_lists_the_columns(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_text_examples(text_args(text_file=str(CORPUS_JSONL), **overrides))


def test_target_longer_than_the_decoder_takes_raises():
    # source -> target: definitions as targets are long
    args = text_args(
        text_file=str(CORPUS_JSONL), source_column="word", target_column="definition", max_target_length=64
    )
    with pytest.raises(
        ValueError, match=r"targets are longer .* `max_target_length` is 64\. Raise `max_target_length`.*`long_targets` truncate"
    ):
        build_text_examples(args)
    # denoising: the target length follows from chunk_length and noise_density
    target_length = corrupted_lengths(200, 0.15, 3.0)[1]  # 30 dropped tokens + 10 sentinels + EOS
    with pytest.raises(
        ValueError, match=rf"has {target_length} tokens .* `max_target_length` is 40.*lower `chunk_length`"
    ):
        build_text_examples(text_args(chunk_length=200, max_target_length=40))


def test_text_shorter_than_one_chunk_raises(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("Only a few words here.\n")
    with pytest.raises(ValueError, match="fewer than `chunk_length`=32 tokens"):
        build_text_examples(text_args(text_file=str(path)))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(text_file=None), "exactly one of `text_file`"),
        (dict(dataset_name="some/dataset"), "exactly one of `text_file`"),
        (dict(source_column="word"), "`source_column` and `target_column` go together"),
        (dict(noise_density=1.5), "`noise_density`"),
        (dict(mean_noise_span_length=0.5), "`mean_noise_span_length`"),
    ],
)
def test_bad_text_arguments_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        text_args(**overrides)


def test_check_target_length_counts_the_offenders():
    from datasets import Dataset

    dataset = Dataset.from_dict({"labels": [[5, 1], [5, 6, 7, 1], [5, 6, 7, 8, 1]]})
    assert check_target_length(dataset, 5, "") == 5
    with pytest.raises(ValueError, match="2 of 3 targets .* the longest has 5 tokens"):
        check_target_length(dataset, 3, "")


# -------------------------------------------------------------------------------------------- training


def tiny_training_args(output_dir, **overrides) -> Seq2SeqTrainingArguments:
    values = dict(
        output_dir=str(output_dir),
        max_steps=4,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        predict_with_generate=True,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )
    values.update(overrides)
    return Seq2SeqTrainingArguments(**values)


TINY_MODEL = dict(d_model=32, encoder_layers=1, decoder_layers=1, num_heads=4, d_ff=64)


def test_denoising_trains_and_saves_a_loadable_folder(tmp_path):
    args = text_args(num_eval_examples=8, max_train_examples=64)
    results = train_text(ModelArguments(**TINY_MODEL), args, tiny_training_args(tmp_path))

    assert results["objective"] == "denoising" and results["train"]["global_step"] == 4
    assert json.loads((tmp_path / "results.json").read_text())["eval"] == json.loads(json.dumps(results["eval"]))
    assert {"loss", "exact_match", "token_accuracy", "chrf", "bleu"} <= results["eval"].keys()
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "tokenizer.json").is_file()

    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert model.config.vocab_size == len(tokenizer) == 600
    assert sentinel_ids(tokenizer, NUM_SENTINELS) == list(range(3, 3 + NUM_SENTINELS))

    # The reloaded model gives the recorded held-out loss on the same held-out examples (rebuilt from the arguments).
    _, examples = build_text_examples(args, tokenizer=tokenizer)
    held_out = examples.train_test_split(test_size=args.num_eval_examples, seed=args.text_seed)["test"]
    batch = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)(held_out.to_list())
    with torch.no_grad():
        loss = model(**batch).loss.item()
    assert loss == pytest.approx(results["eval"]["loss"], abs=1e-4)
    generated = model.generate(batch["input_ids"][:2], attention_mask=batch["attention_mask"][:2], max_new_tokens=4)
    assert generated.shape[0] == 2


def test_source_target_columns_train(tmp_path):
    args = text_args(
        text_file=str(CORPUS_JSONL),
        source_column="definition",
        target_column="word",
        max_source_length=48,
        num_eval_examples=8,
        max_train_examples=32,
    )
    results = train_text(ModelArguments(**TINY_MODEL), args, tiny_training_args(tmp_path, max_steps=2))
    assert results["objective"] == "seq2seq" and results["train"]["global_step"] == 2
    assert 0.0 <= results["eval"]["token_accuracy"] <= 1.0
    assert AutoTokenizer.from_pretrained(tmp_path)("ABASEMENT")["input_ids"][-1] == 1


@pytest.mark.parametrize("mode", ["truncate", "drop"])
def test_long_targets_are_truncated_or_dropped_when_asked(mode, caplog):
    args = dict(text_file=str(CORPUS_JSONL), source_column="word", target_column="definition", max_target_length=64)
    _, whole = build_text_examples(text_args(**{**args, "max_target_length": 10**6}))
    lengths = [len(labels) for labels in whole["labels"]]
    with caplog.at_level("WARNING"):
        tokenizer, examples = build_text_examples(text_args(**args, long_targets=mode))
    kept = [len(labels) for labels in examples["labels"]]
    assert max(kept) <= 64
    if mode == "truncate":
        assert len(kept) == len(lengths) and kept == [min(n, 64) for n in lengths]
        assert all(labels[-1] == tokenizer.eos_token_id for labels in examples["labels"])  # EOS kept
    else:
        assert len(kept) == sum(n <= 64 for n in lengths) < len(lengths)
        assert f"Dropped {len(lengths) - len(kept)} of {len(lengths)} examples" in caplog.text


def test_long_targets_option_is_refused_for_denoising():
    with pytest.raises(ValueError, match=r"`long_targets`='truncate' is for source -> target training"):
        text_args(long_targets="truncate")


def test_text_training_sets_logn_to_the_longest_training_source(tmp_path):
    args = text_args(num_eval_examples=8, max_train_examples=16)
    results = train_text(ModelArguments(**TINY_MODEL), args, tiny_training_args(tmp_path, max_steps=1))
    config = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).config
    tokenizer, examples = build_text_examples(args)
    assert config.cross_attention_logn_length == max(len(ids) for ids in examples["input_ids"]) > 1
    assert results["train"]["global_step"] == 1
    plain = train_text(ModelArguments(**TINY_MODEL, cross_attention_logn_length="off"), args, tiny_training_args(tmp_path / "plain", max_steps=1))
    assert plain and AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "plain").config.cross_attention_logn_length is None


def test_learned_positions_too_short_for_the_targets_raise_before_training(tmp_path):
    model_args = ModelArguments(**TINY_MODEL, position_embedding_type="learned", max_position_embeddings=16)
    with pytest.raises(ValueError, match="`learned` (encoder|decoder) has `max_position_embeddings`=16 rows"):
        train_text(model_args, text_args(num_eval_examples=8), tiny_training_args(tmp_path))
    assert not (tmp_path / "model.safetensors").exists()


# --------------------------------------------------------------------------------------------- script


def test_script_parses_text_arguments(monkeypatch, tmp_path):
    for name, value in {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("train_text_script", REPO / "scripts" / "train_text.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    model_args, text_args_, training_args = script.parse_args(
        ["--text_file", str(CORPUS_JSONL), "--source_column", "definition", "--target_column", "word"]
    )
    assert text_args_.objective == "seq2seq" and training_args.predict_with_generate
    assert training_args.max_steps == script.TEXT_DEMO_DEFAULTS["max_steps"]
    config = tmp_path / "run.yaml"
    config.write_text(f"text_file: {CORPUS_TXT}\nchunk_length: 64\nmax_steps: 3\n")
    _, text_args_, training_args = script.parse_args([str(config)])
    assert (text_args_.objective, text_args_.chunk_length, training_args.max_steps) == ("denoising", 64, 3)


# ------------------------------------------------------------------------------------- long documents (KJV)


def test_the_long_document_corpus_holds_out_whole_books_and_matches_its_readme():
    """data/kjv_books.jsonl.gz: one record per book, whole books held out, the bytes the README's sha256 names."""
    import hashlib
    import re
    import runpy

    from datasets import load_dataset

    path = REPO / "data" / "kjv_books.jsonl.gz"
    documented = re.search(r"sha256\s+`([0-9a-f]{64})`\. Read it", (REPO / "data" / "README.md").read_text())
    assert documented and hashlib.sha256(path.read_bytes()).hexdigest() == documented.group(1)

    books = load_dataset("json", data_files=str(path), split="train")
    assert len(books) == 66 and books[0]["book"] == "Genesis" and books[-1]["book"] == "Revelation"
    held_out = [row["book"] for row in books if row["split"] == "test"]
    assert tuple(held_out) == runpy.run_path(str(REPO / "data" / "build_kjv.py"))["EVAL_BOOKS"]
    words = {split: sum(len(r["text"].split()) for r in books if r["split"] == split) for split in ("train", "test")}
    assert words == {"train": 702_410, "test": 87_224}
    assert min(len(r["text"].split()) for r in books if r["split"] == "test") > 16_000  # room for 16k-token passages


@pytest.fixture(scope="module")
def devil_documents(corpus, bpe):
    """The Devil's Dictionary as 4 long documents of BPE ids."""
    from hf_longctx.data.text import document_token_ids

    return document_token_ids(["\n".join(corpus[i::4]) for i in range(4)], bpe)


def test_a_needle_haystack_source_is_a_passage_with_the_needle_inside_and_the_question_last(devil_documents, bpe):
    """Exactly n tokens with EOS; the needle sentence whole at the recorded depth, at a word start; without it the
    rest is one run of a document, then the question; the target is the code."""
    from hf_longctx.data.tasks import DEPTH_BINS
    from hf_longctx.data.text import NEEDLE, NEEDLE_QUESTION, needle_haystack_dataset

    lengths = [40, 64, 200, 333, 512] * 4
    dataset = needle_haystack_dataset(devil_documents, bpe, lengths, seed=3, stratify_depth=True)
    question = bpe(NEEDLE_QUESTION, add_special_tokens=False)["input_ids"]
    documents = [" ".join(map(str, ids)) for ids in devil_documents]
    for i, (n, row) in enumerate(zip(lengths, dataset, strict=True)):
        ids = row["input_ids"]
        assert len(ids) == n and ids[-1] == bpe.eos_token_id and ids[-1 - len(question) : -1] == question
        needle = bpe(NEEDLE.format(code=row["code"]), add_special_tokens=False)["input_ids"]
        passage = ids[: -1 - len(question)]
        room = len(passage) - len(needle)
        at = round(row["depth"] * room)
        assert passage[at : at + len(needle)] == needle
        haystack = passage[:at] + passage[at + len(needle) :]
        assert any(" ".join(map(str, haystack)) in doc for doc in documents)  # one run of one document
        assert at in (0, room) or bpe.convert_ids_to_tokens(haystack[at]).startswith("\u0120")  # a word starts there
        assert bpe.decode(row["labels"], skip_special_tokens=True) == row["code"] and len(row["code"]) == 5
        assert min(int(row["depth"] * DEPTH_BINS), DEPTH_BINS - 1) == i % DEPTH_BINS  # stratified: its own bin
    assert len(set(dataset["code"])) == len(lengths)
    again = needle_haystack_dataset(devil_documents, bpe, lengths, seed=3, stratify_depth=True)
    assert again["input_ids"] == dataset["input_ids"]


def test_a_needle_haystack_source_too_short_for_the_needle_is_refused(devil_documents, bpe):
    from hf_longctx.data.text import needle_haystack_dataset

    with pytest.raises(ValueError, match=r"A source of 12 tokens has no room for the needle \(\d+ tokens\) and the "
                       r"question \(\d+\) around a passage: use sources of at least \d+ tokens"):  # fmt: skip
        needle_haystack_dataset(devil_documents, bpe, [64, 12], seed=0)


def test_a_needle_haystack_needs_a_tokenizer_that_marks_word_starts(devil_documents):
    from hf_longctx.data.text import needle_haystack_dataset

    with pytest.raises(ValueError, match=r"marks no token as a word start .* so the needle would go inside words"):
        needle_haystack_dataset(devil_documents, build_tokenizer(), [64], seed=0)


@pytest.mark.parametrize(
    "extra, pattern",
    [
        (["--source_column", "definition", "--target_column", "word", "--noise_density", "0.5", "--text_column", "x"],
         r"--text_column is read only by the denoising objective; --noise_density is read only by the denoising"),
        (["--max_source_length", "16"], r"--max_source_length is read only by the seq2seq objective .*this run is denoising"),
        (["--tokenizer_name", "somewhere", "--tokenizer_vocab_size", "3000"],
         r"--tokenizer_vocab_size is read only by a trained BPE \(no --tokenizer_name\)"),
        (["--dataset_split", "validation"], r"--dataset_split is read only by --dataset_name"),
        (["--predict_with_generate", "false", "--generation_num_beams", "4"],
         r"--generation_num_beams sets how the held-out examples are decoded, and --predict_with_generate false "
         r"scores the loss only: drop it, or drop --predict_with_generate false"),
        (["--max_train_examples", "0"], r"`max_train_examples`=0 .* at least 1"),
        (["--max_source_length", "0"], r"`max_source_length`=0 leaves no source token before the EOS"),
        (["--max_target_length", "1"], r"`max_target_length`=1 leaves no target token before the EOS"),
    ],
)  # fmt: skip
def test_text_flags_this_run_would_not_read_are_refused(extra, pattern):
    from hf_longctx.cli import parse_train_text_args

    with pytest.raises(ValueError, match=pattern):
        parse_train_text_args(["--text_file", str(CORPUS_JSONL), *extra])
    config = parse_train_text_args(["--text_file", str(CORPUS_TXT), "--chunk_length", "32"])[1]
    assert config.chunk_length == 32, "a flag the objective reads is taken"

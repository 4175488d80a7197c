"""Data, tokenizer, metrics and the training entry point (tiny model, a few steps; about 30 s on 2 CPU cores)."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import evaluate
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig, Seq2SeqTrainingArguments

from hf_longctx import LongCtxConfig
from hf_longctx.data.tasks import DIGITS, LETTERS, TASKS, make_task
from hf_longctx.data.tokenization import build_tokenizer
from hf_longctx.training.trainer import DataArguments, ModelArguments, train

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------------------- data


@pytest.mark.parametrize("name", list(TASKS))
def test_task_is_deterministic_per_seed(name):
    first = make_task(name, 20, 24, 40, seed=3).to_dict()
    assert first == make_task(name, 20, 24, 40, seed=3).to_dict()
    assert first != make_task(name, 20, 24, 40, seed=4).to_dict()


@pytest.mark.parametrize("name", list(TASKS))
def test_lengths_are_encoder_tokens_with_eos(name):
    tokenizer = build_tokenizer()
    ds = make_task(name, 30, 24, 40, seed=0)
    assert all(24 <= n <= 40 for n in ds["length"])
    assert [len(ids) for ids in tokenizer(list(ds["source"]))["input_ids"]] == list(ds["length"])
    assert set(make_task(name, 5, 77, 77, seed=1)["length"]) == {77}


def test_passkey_needle_is_where_claimed():
    for row in make_task("passkey", 200, 7, 64, seed=0):
        words, target = row["source"].split(), row["target"].split()
        p = row["position"]
        assert words[p] == "KEY" and words[p + 1 : p + 6] == target
        assert len(target) == 5 and all(d in DIGITS for d in target)
        filler = words[:p] + words[p + 6 :]
        assert all(w in LETTERS for w in filler)  # the only KEY and the only digits are the needle's
        assert row["depth"] == pytest.approx(p / len(filler) if filler else 0.0)
    depths = make_task("passkey", 400, 60, 64, seed=1)["depth"]
    assert min(depths) < 0.05 and max(depths) > 0.95  # the needle visits every depth


def test_kv_recall_value_is_the_queried_keys():
    for row in make_task("kv_recall", 100, 10, 100, seed=0):
        words, p = row["source"].split(), row["position"]
        assert words[-3] == "?" and words[p : p + 2] == words[-2:]  # the pair at `position` holds the queried key
        assert words[p + 2] == "=" and words[p + 3 : p + 6] == row["target"].split()
        pairs = words[words.index("=") - 2 : -3] if "=" in words else []
        keys = [tuple(pairs[i : i + 2]) for i in range(0, len(pairs), 6)]
        assert len(keys) == len(set(keys))  # keys are distinct, so the answer is unique


@pytest.mark.parametrize("num_records", [1, 2, 4])
def test_multikey_value_is_the_queried_records(num_records):
    rows = make_task("multikey", 200, 10 * num_records + 4, 80, seed=0, num_records=num_records)
    for row in rows:
        words, p = row["source"].split(), row["position"]
        starts = [i for i, w in enumerate(words) if w == "KEY"]
        assert len(starts) == num_records and p in starts
        keys = [tuple(words[i + 1 : i + 3]) for i in starts]
        assert len(set(keys)) == num_records  # distinct keys: the answer is unique
        assert words[-3] == "?" and tuple(words[-2:]) == keys[starts.index(p)]
        assert words[p + 3] == "=" and words[p + 4 : p + 9] == row["target"].split()
        records = {j for i in starts for j in range(i, i + 9)}
        assert all(w == "." for j, w in enumerate(words[:-3]) if j not in records)  # the rest is filler
    depths = rows["depth"]
    assert min(depths) < 0.05 and max(depths) > 0.95


def test_copy_and_reverse_targets():
    for row in make_task("copy", 10, 2, 30, seed=0):
        assert row["target"] == row["source"] and row["position"] == -1
    for row in make_task("reverse", 10, 2, 30, seed=0):
        assert row["target"].split() == row["source"].split()[::-1]


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(name="needle", num_samples=4, min_len=16, max_len=32), "`name`"),
        (dict(name="passkey", num_samples=4, min_len=64, max_len=16), "`min_len`"),
        (dict(name="passkey", num_samples=4, min_len=6, max_len=16), "`min_len`"),  # KEY + 5 digits + EOS = 7
        (dict(name="kv_recall", num_samples=4, min_len=9, max_len=16), "`min_len`"),
        (dict(name="kv_recall", num_samples=4, min_len=16, max_len=10**5), "`max_len`"),
        (dict(name="copy", num_samples=0, min_len=16, max_len=32), "`num_samples`"),
        (dict(name="multikey", num_samples=4, min_len=21, max_len=32), "`min_len`"),  # 2 x 9 + 3 + EOS = 22
        (dict(name="multikey", num_samples=4, min_len=30, max_len=32, num_records=3), "`min_len`"),
        (dict(name="multikey", num_samples=4, min_len=30, max_len=32, num_records=0), "`num_records`"),
        (dict(name="passkey", num_samples=4, min_len=30, max_len=32, num_records=2), "`num_records`"),
    ],
)
def test_bad_task_arguments_raise_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        make_task(**kwargs)


# ------------------------------------------------------------------------------------------ tokenizer


def test_tokenizer_ids_match_the_config_defaults():
    tokenizer, config = build_tokenizer(), LongCtxConfig()
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert config.pad_token_id == tokenizer.pad_token_id == config.decoder_start_token_id
    assert config.eos_token_id == tokenizer.eos_token_id


@pytest.mark.parametrize("name", list(TASKS))
def test_tokenizer_round_trips_every_task(name):
    tokenizer = build_tokenizer()
    ds = make_task(name, 20, 24, 40, seed=0)
    encoded = tokenizer(list(ds["source"]), text_target=list(ds["target"]))
    rows = zip(encoded["input_ids"], encoded["labels"], ds["source"], ds["target"], strict=True)
    for ids, labels, source, target in rows:
        assert ids[-1] == labels[-1] == tokenizer.eos_token_id and tokenizer.unk_token_id not in ids + labels
        assert tokenizer.decode(ids, skip_special_tokens=True) == source
        assert tokenizer.decode(labels, skip_special_tokens=True) == target


def test_tokenizer_saves_and_loads_with_auto_tokenizer(tmp_path):
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "a b KEY 1 2 3 4 5 z ? . ="
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded("a WORD")["input_ids"] == [tokenizer.convert_tokens_to_ids("a"), 2, 1]  # unknown word -> unk
    assert (loaded.pad_token_id, loaded.eos_token_id, len(loaded)) == (0, 1, len(tokenizer))
    batch = loaded(["a b c", "a"], padding=True)
    assert batch["input_ids"][1] == [loaded.convert_tokens_to_ids("a"), 1, 0, 0]  # right padding with id 0


# -------------------------------------------------------------------------------------------- metrics


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails: loading must not touch the hub."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_exact_match_by_depth_scores_each_bin_with_the_shipped_metric():
    from hf_longctx.training.trainer import exact_match_by_depth

    predictions, references = ["1 2", " 3  4 ", "5", "6", "7"], ["1 2", "3 4", "0", "6", "7"]
    depths = [0.0, 0.1, 0.5, 0.99, 1.0]  # bins [0, .2) twice, [.4, .6) once (wrong), [.8, 1.0] twice
    assert exact_match_by_depth(predictions, references, depths) == [1.0, None, 0.0, None, 1.0]


def test_metrics_load_by_path_offline(no_network, monkeypatch):
    monkeypatch.chdir(REPO)  # the documented call from the repository root: evaluate.load("hf_longctx/training/metrics/<name>")
    exact_match = evaluate.load("hf_longctx/training/metrics/exact_match")
    assert exact_match.compute(predictions=["1 2 3", " 4  5 ", "x"], references=["1 2 3", "4 5", "y"]) == {
        "exact_match": pytest.approx(2 / 3)
    }
    assert exact_match.compute(predictions=["A b"], references=["a B"], ignore_case=True)["exact_match"] == 1.0

    token_accuracy = evaluate.load("hf_longctx/training/metrics/token_accuracy")
    # 2 of 3 positions, then 1 of max(1, 2) positions: (2 + 1) / (3 + 2); the missing "y" counts as an error
    refs = [["a", "b", "d"], ["x", "y"]]
    assert token_accuracy.compute(predictions=[["a", "b", "c"], ["x"]], references=refs)["token_accuracy"] == 0.6
    assert token_accuracy.compute(predictions=[[5, 6, 7]], references=[[5, 6]])["token_accuracy"] == pytest.approx(
        2 / 3
    )

    chrf = evaluate.load(str(REPO / "hf_longctx" / "training" / "metrics" / "chrf"))  # an absolute path works from anywhere
    scores = chrf.compute(predictions=["the cat sat on the mat"], references=["the cat sat on the mat"])
    assert scores["chrf"] == pytest.approx(100.0) and scores["bleu"] == pytest.approx(100.0)
    assert chrf.compute(predictions=["xyz"], references=[["the cat", "a dog"]])["chrf"] < 10


# ------------------------------------------------------------------------------------------- training


def tiny_run_args(output_dir, **overrides):
    model_args = ModelArguments(d_model=32, encoder_layers=1, decoder_layers=1, num_heads=4, d_ff=64)
    data_args = DataArguments(
        task="passkey", train_min_len=16, train_max_len=32, eval_lengths=[32, 96], num_train=64, num_eval=8
    )
    values = dict(
        output_dir=str(output_dir),
        max_steps=4,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        predict_with_generate=True,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )
    values.update(overrides)
    return model_args, data_args, Seq2SeqTrainingArguments(**values)


def test_train_writes_a_loadable_folder_and_results(tmp_path):
    model_args, data_args, training_args = tiny_run_args(tmp_path)
    results = train(model_args, data_args, training_args)

    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results, default=str))
    assert results["train"]["global_step"] == 4
    assert set(results["eval"]) == {"32", "96"}
    for scores in results["eval"].values():
        assert 0.0 <= scores["exact_match"] <= 1.0 and scores["num_samples"] == 8
        assert len(scores["exact_match_by_depth"]) == 5
    table = (tmp_path / "results.md").read_text()
    assert "| 96 | 3.0 |" in table

    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert type(model).__name__ == "LongCtxForConditionalGeneration" and model.config.vocab_size == len(tokenizer)
    assert GenerationConfig.from_pretrained(tmp_path).decoder_start_token_id == tokenizer.pad_token_id

    # The reloaded model reproduces the recorded score: greedy decoding of the same examples (eval seeds are
    # dataset_seed + 2 + index of the length).
    raw = make_task("passkey", 8, 96, 96, seed=data_args.dataset_seed + 3)
    batch = tokenizer(list(raw["source"]), return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**batch, max_length=7)
    predictions = tokenizer.batch_decode(generated, skip_special_tokens=True)
    token_accuracy = evaluate.load(str(REPO / "hf_longctx" / "training" / "metrics" / "token_accuracy"))
    score = token_accuracy.compute(
        predictions=[p.split() for p in predictions], references=[t.split() for t in raw["target"]]
    )["token_accuracy"]
    assert score == pytest.approx(results["eval"]["96"]["token_accuracy"])


@pytest.mark.parametrize("given", [{}, {"generation_num_beams": 3, "generation_max_length": 9}])
def test_the_final_evaluation_generates_as_the_generation_arguments_say(given, tmp_path, monkeypatch):
    """Greedy and as long as the longest target by default; the user's `generation_*` arguments when given."""
    from hf_longctx import LongCtxForConditionalGeneration

    calls, generate = [], LongCtxForConditionalGeneration.generate

    def spy(self, *args, **kwargs):
        calls.append({k: kwargs.get(k) for k in ("num_beams", "max_length")})
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(LongCtxForConditionalGeneration, "generate", spy)
    results = train(*tiny_run_args(tmp_path, max_steps=1, eval_strategy="no", **given))
    expected = {"num_beams": given.get("generation_num_beams", 1), "max_length": given.get("generation_max_length", 7)}
    assert calls and all(call == expected for call in calls), calls
    assert results["generation"] == {**expected, "max_length": given.get("generation_max_length")}
    card = (tmp_path / "README.md").read_text()
    assert ("beam search (3 beams), at most 9 tokens" if given else "fresh examples each, greedy decoding.") in card


def test_a_generation_config_decodes_the_final_evaluation_and_is_recorded(tmp_path, monkeypatch):
    """`--generation_config` (a folder or a GenerationConfig) sets the final evaluation's beams and length where no
    `generation_*` argument does, the folder saves, and the results say how it decoded (it used to crash on saving
    the arguments, a Path, after training, and to score with greedy decoding whatever the config said)."""
    from hf_longctx import LongCtxForConditionalGeneration

    calls, generate = [], LongCtxForConditionalGeneration.generate

    def spy(self, *args, **kwargs):
        calls.append({k: kwargs.get(k) for k in ("num_beams", "max_length")})
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(LongCtxForConditionalGeneration, "generate", spy)
    GenerationConfig(num_beams=3, max_length=30, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0).save_pretrained(
        tmp_path / "gen"
    )
    results = train(*tiny_run_args(tmp_path / "run", max_steps=1, eval_strategy="no", generation_config=tmp_path / "gen"))
    assert calls and all(call == {"num_beams": 3, "max_length": 30} for call in calls), calls
    assert results["generation"] == {"num_beams": 3, "max_length": 30}
    assert json.loads((tmp_path / "run" / "training_args.json").read_text())["generation_config"]
    assert GenerationConfig.from_pretrained(tmp_path / "run").num_beams == 3
    with pytest.raises(ValueError, match=r"`generation_config`.*max_length=5 cuts the final evaluation short"):
        train(*tiny_run_args(tmp_path / "short", max_steps=1, eval_strategy="no",
                             generation_config=GenerationConfig(max_length=5)))  # fmt: skip
    with pytest.raises(ValueError, match=r"`generation_config`'s max_new_tokens=3 cuts the final evaluation short"):
        train(*tiny_run_args(tmp_path / "new", max_steps=1, eval_strategy="no",
                             generation_config=GenerationConfig(max_new_tokens=3)))  # fmt: skip
    # a config of decoding choices only (no special ids): the model's own ids fill them, and it generates
    results = train(*tiny_run_args(tmp_path / "beams", max_steps=1, eval_strategy="no",
                                   generation_config=GenerationConfig(num_beams=2)))  # fmt: skip
    assert results["generation"]["num_beams"] == 2
    assert GenerationConfig.from_pretrained(tmp_path / "beams").decoder_start_token_id == 0


def test_resuming_a_checkpoint_of_another_model_is_refused_naming_the_fields(tmp_path):
    train(*tiny_run_args(tmp_path, max_steps=2, eval_strategy="no", save_strategy="steps", save_steps=2))
    model_args, data_args, training_args = tiny_run_args(
        tmp_path, max_steps=4, eval_strategy="no", save_strategy="steps", save_steps=2, resume_from_checkpoint="last"
    )
    model_args.position_embedding_type = "rope"
    with pytest.raises(ValueError, match=r"checkpoint-2 holds a model with .*position_embedding_type='alibi' \(this "
                       r"run builds 'rope'\).*resume with the model arguments it was trained with"):  # fmt: skip
        train(model_args, data_args, training_args)
    model_args.position_embedding_type, model_args.d_model = "alibi", 64
    with pytest.raises(ValueError, match=r"d_model=32 \(this run builds 64\)"):
        train(model_args, data_args, training_args)


def test_a_randomized_positions_bound_below_the_training_length_is_refused_before_training(tmp_path):
    model_args, data_args, training_args = tiny_run_args(tmp_path, max_steps=1, eval_strategy="no")
    model_args.randomized_positions_max_length = 24
    with pytest.raises(ValueError, match=r"`randomized_positions_max_length`=24 is below `train_max_len`=32.*Give at "
                       r"least 32 \(better: the longest `eval_lengths`, 96\)"):  # fmt: skip
        train(model_args, data_args, training_args)
    assert not (tmp_path / "model.safetensors").exists()


def test_training_with_flex_attention_on_cpu_is_refused_before_the_first_step(tmp_path):
    model_args, data_args, training_args = tiny_run_args(tmp_path, max_steps=1, eval_strategy="no")
    model_args.attn_implementation = "flex_attention"
    with pytest.raises(ValueError, match=r"flex_attention has no backward on CPU .* train with sdpa or eager"):
        train(model_args, data_args, training_args)


def test_a_generation_max_length_shorter_than_the_targets_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"`generation_max_length`=5 cuts the final evaluation short: .* needs 7"):
        train(*tiny_run_args(tmp_path, max_steps=1, eval_strategy="no", generation_max_length=5))


def test_final_folder_holds_training_arguments_as_json_not_a_pickle(tmp_path):
    train(*tiny_run_args(tmp_path, max_steps=1, eval_strategy="no"))
    assert not (tmp_path / "training_args.bin").exists()
    assert json.loads((tmp_path / "training_args.json").read_text())["max_steps"] == 1


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    from safetensors.torch import load_file

    from hf_longctx.training.trainer import NonFiniteTrainingError

    args = tiny_run_args(tmp_path, learning_rate=1e30, max_steps=6, save_strategy="steps", save_steps=1, eval_strategy="no")
    with pytest.raises(NonFiniteTrainingError, match=r"Training stopped at step \d+: the gradient norm is (nan|inf).*`learning_rate` \(now 1e\+30\)"):
        train(*args)
    assert not (tmp_path / "model.safetensors").exists()  # no final model
    checkpoints = sorted(tmp_path.glob("checkpoint-*"))
    assert checkpoints, "the steps before the non-finite one were checkpointed"
    weights = load_file(checkpoints[-1] / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_the_train_script_exits_non_zero_on_a_non_finite_loss(tmp_path):
    result = subprocess.run(
        [sys.executable, "scripts/train.py", "--output_dir", str(tmp_path), "--max_steps", "5", "--learning_rate", "1e30",
         "--d_model", "32", "--d_ff", "64", "--num_train", "64", "--eval_strategy", "no", "--eval_lengths", "32",
         "--num_eval", "4", "--log_level", "error"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode != 0
    assert "hf-longctx-train: error: Training stopped at step" in result.stderr
    assert not (tmp_path / "model.safetensors").exists()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--save_steps", "3"], {"save_strategy": "steps", "save_steps": 3}),  # the demo's "no" would ignore it
        (["--save_total_limit", "2"], {"save_strategy": "steps"}),
        (["--num_train_epochs", "2"], {"max_steps": -1, "num_train_epochs": 2}),  # the demo's 4000 steps would win
        ([], {"save_strategy": "no", "max_steps": 4000, "warmup_steps": 200}),  # the demo defaults otherwise
        (["--save_strategy", "epoch"], {"save_strategy": "epoch"}),
    ],
)
def test_a_flag_the_user_gave_is_not_overridden_by_a_demo_default(argv, expected, tmp_path):
    from hf_longctx.cli import parse_train_args

    _, _, training_args = parse_train_args(["--output_dir", str(tmp_path), *argv])
    for name, value in expected.items():
        actual = getattr(training_args, name)
        assert getattr(actual, "value", actual) == value, name
    config_file = tmp_path / "args.json"
    values = {flag.removeprefix("--"): _json_or_str(value) for flag, value in zip(argv[::2], argv[1::2], strict=True)}
    config_file.write_text(json.dumps({"output_dir": str(tmp_path), **values}))
    _, _, from_file = parse_train_args([str(config_file)])
    for name, value in expected.items():
        actual = getattr(from_file, name)
        assert str(getattr(actual, "value", actual)) == str(value), name


def _json_or_str(value: str):
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["--save_strategy", "no", "--save_steps", "3"], r"--save_steps 3 does nothing with --save_strategy no"),
        (["--eval_strategy", "no", "--eval_steps", "5"], r"--eval_steps 5 does nothing with --eval_strategy no"),
        (["--max_steps", "10", "--num_train_epochs", "2"], r"--num_train_epochs 2.* does nothing with --max_steps 10"),
        (["--max_steps", "0"], r"--max_steps 0 trains nothing: give a positive number of steps, or -1"),
        (["--max_steps", "-5"], r"--max_steps -5 .* a positive number of steps, or -1"),
        (["--num_train_epochs", "0"], r"--num_train_epochs 0 trains nothing"),
        (["--learning_rate", "0"], r"--learning_rate 0 trains nothing \(the weights stay as initialised\): give a positive"),
        (["--learning_rate=-1e-3"], r"--learning_rate -0.001 is not a learning rate: give a positive number"),
        (["--learning_rate", "nan"], r"--learning_rate nan is not a learning rate"),
    ],
)
def test_flags_that_cancel_each_other_are_refused(argv, pattern, tmp_path):
    from hf_longctx.cli import parse_train_args

    with pytest.raises(ValueError, match=pattern):
        parse_train_args(["--output_dir", str(tmp_path), *argv])


def test_a_learning_rate_that_cannot_train_is_refused_from_python_too(tmp_path):
    """The CLI refuses --learning_rate 0 by its flag; `train` called from Python with such arguments did not (0 ran
    to the end with the weights as initialised and returned results)."""
    with pytest.raises(ValueError, match=r"`learning_rate` 0 trains nothing \(the weights stay as initialised\)"):
        train(*tiny_run_args(tmp_path, learning_rate=0.0))
    assert not any(tmp_path.iterdir()), "refused before anything is written"


def test_resume_last_skips_a_half_written_checkpoint(tmp_path, caplog):
    from hf_longctx.training.trainer import checkpoint_to_resume

    for step, complete in ((2, True), (4, True), (6, False), (10, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), resume_from_checkpoint="last", report_to="none")
    with caplog.at_level("WARNING"):
        assert checkpoint_to_resume(args) == str(tmp_path / "checkpoint-4")
    assert "checkpoint-10" in caplog.text and "checkpoint-6" in caplog.text and "not written to the end" in caplog.text
    named = Seq2SeqTrainingArguments(output_dir=str(tmp_path), resume_from_checkpoint=str(tmp_path / "checkpoint-6"), report_to="none")
    with pytest.raises(ValueError, match=r"has no trainer_state.json: it was not written to the end"):
        checkpoint_to_resume(named)


def test_several_processes_without_a_distributed_trainer_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"started 2 processes.*Trainer runs each alone.*`use_cpu=True`"):
        train(*tiny_run_args(tmp_path, use_cpu=False))
    assert not list(tmp_path.iterdir())


def test_train_needs_predict_with_generate(tmp_path):
    with pytest.raises(ValueError, match="predict_with_generate"):
        train(*tiny_run_args(tmp_path, predict_with_generate=False))


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"num_eval": 0}, r"`num_eval` is a number of examples and must be at least 1, got 0"),
        ({"num_train": 0}, r"`num_train` is a number of examples"),
        ({"eval_lengths": [64, 5]}, r"`eval_lengths` has 5, too short for task 'passkey': .* at least 7 tokens"),
        ({"train_min_len": 100}, r"`train_min_len`=100 exceeds `train_max_len`=64"),
        ({"task": "multikey", "num_records": 3}, r"`train_min_len` has 16, too short for task 'multikey'"),
        ({"task": "kv_recall", "eval_lengths": [5000]}, r"`eval_lengths` has 5000, too long for task 'kv_recall'"),
    ],
)
def test_data_flags_are_checked_by_their_own_names(kwargs, pattern):
    """Not as `num_samples` / `min_len` from inside `make_task` once the run has started."""
    with pytest.raises(ValueError, match=pattern):
        DataArguments(**kwargs)


def test_empty_eval_lengths_raise():
    with pytest.raises(ValueError, match="eval_lengths"):
        DataArguments(eval_lengths=[])


# -------------------------------------------------------------------------------------------- script


@pytest.fixture
def train_script(monkeypatch):
    # The script sets a few environment defaults on import; pin them so the test leaves os.environ as it found it.
    for name, value in {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("train_script", REPO / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_demo_defaults_and_overrides(train_script, tmp_path):
    model_args, data_args, training_args = train_script.parse_args(["--output_dir", str(tmp_path)])
    assert (model_args.position_embedding_type, model_args.d_model, data_args.task) == ("alibi", 64, "passkey")
    assert training_args.predict_with_generate and training_args.learning_rate == 1e-3
    assert training_args.max_steps == train_script.DEMO_DEFAULTS["max_steps"]

    _, data_args, training_args = train_script.parse_args(
        ["--output_dir", str(tmp_path), "--learning_rate", "3e-4", "--eval_lengths", "32", "128"]
    )
    assert training_args.learning_rate == 3e-4 and data_args.eval_lengths == [32, 128]

    config = tmp_path / "run.yaml"
    config.write_text(f"output_dir: {tmp_path}\ntask: copy\nmax_steps: 7\nd_model: 32\n")
    model_args, data_args, training_args = train_script.parse_args([str(config)])
    assert (data_args.task, training_args.max_steps, model_args.d_model) == ("copy", 7, 32)
    assert training_args.predict_with_generate  # demo defaults still apply under a file


def test_build_model_sizes_positions_by_encoding():
    from hf_longctx.data.tokenization import build_tokenizer
    from hf_longctx.training.trainer import ModelArguments, build_model

    tokenizer = build_tokenizer()
    learned = build_model(ModelArguments(position_embedding_type="learned"), tokenizer, 2048, trained_length=64)
    rope = build_model(ModelArguments(position_embedding_type="rope"), tokenizer, 2048, trained_length=64)
    assert learned.config.max_position_embeddings == 2048, "every evaluation length has a table row"
    assert rope.config.max_position_embeddings == 64, "dynamic NTK switches on past the trained length"
    assert learned.config.cross_attention_logn_length == rope.config.cross_attention_logn_length == 64
    plain = build_model(ModelArguments(cross_attention_logn_length="off"), tokenizer, 2048, trained_length=64)
    assert plain.config.cross_attention_logn_length is None
    given = build_model(ModelArguments(cross_attention_logn_length="48"), tokenizer, 2048, trained_length=64)
    assert given.config.cross_attention_logn_length == 48
    with pytest.raises(ValueError, match=r"`cross_attention_logn_length`='yes' is not `trained`.*`off` or a length"):
        build_model(ModelArguments(cross_attention_logn_length="yes"), tokenizer, 2048, trained_length=64)
    capped = build_model(
        ModelArguments(position_embedding_type="relative", relative_attention_max_distance=32), tokenizer, 2048, 64
    )
    assert capped.config.relative_attention_max_distance == 32


@pytest.mark.slow
def test_a_non_editable_install_trains_and_writes_its_card(tmp_path):
    """`pip install .` (a wheel, not the source tree) ships what training reads at run time: the metric modules and
    the model card template. Run from outside the checkout, with the wheel's files only."""
    import shutil

    wheel_dir, target, source = tmp_path / "wheel", tmp_path / "site", tmp_path / "source"
    # built from a copy: setuptools writes build/ and *.egg-info into the tree it builds
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "results", "__pycache__", "build"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = wheel_dir.glob("hf_longctx-*.whl")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    assert (target / "hf_longctx" / "training" / "metrics" / "exact_match" / "exact_match.py").is_file()
    out = tmp_path / "run"
    run = subprocess.run(
        [sys.executable, "-c", "import sys, hf_longctx.cli as c; sys.stderr.write('FROM ' + c.__file__ + chr(10)); c.train_main()",
         "--output_dir", str(out), "--max_steps", "2", "--d_model", "32", "--d_ff", "64", "--num_train", "32",
         "--eval_strategy", "no", "--eval_lengths", "32", "--num_eval", "4", "--log_level", "error"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"FROM {target}" in run.stderr  # the installed wheel's code, not the checkout's
    card = (out / "README.md").read_text()
    assert "hf_longctx" in card and "## " in card  # the template's sections, not huggingface_hub's generic card
    assert "No model card template" not in run.stderr


@pytest.mark.parametrize(
    "reference, cls, kwargs",
    [
        ("t5", "T5ForConditionalGeneration", {"relative_attention_max_distance": 32}),
        ("bart", "BartForConditionalGeneration", {}),
        ("marian", "MarianMTModel", {}),
    ],
)
def test_reference_models_have_the_same_sizes(reference, cls, kwargs):
    from hf_longctx.training.trainer import build_model

    tokenizer = build_tokenizer()
    model = build_model(ModelArguments(d_model=32, num_heads=4, d_ff=64, reference=reference, **kwargs), tokenizer, 256)
    assert type(model).__name__ == cls
    assert model.config.d_model == 32 and model.config.vocab_size == len(tokenizer)
    if reference == "t5":
        assert model.config.relative_attention_max_distance == 32 and model.config.num_decoder_layers == 2
    else:
        assert model.config.max_position_embeddings == 256 and model.config.encoder_ffn_dim == 64


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"config_overrides": "norm_type=rmsnorm"}, "`config_overrides`"),
        ({"cross_attention_logn_length": "64"}, "`cross_attention_logn_length`"),
        ({"position_embedding_type": "rope"}, "`position_embedding_type`"),
        ({"randomized_positions_max_length": 512}, "`randomized_positions_max_length`"),
    ],
)
def test_longctx_options_with_a_reference_model_are_refused(kwargs, named):
    from hf_longctx.training.trainer import build_model

    with pytest.raises(ValueError, match=rf"`reference`='t5' builds HF's model .*{named}"):
        build_model(ModelArguments(reference="t5", **kwargs), build_tokenizer(), 256)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ("norm_type=rmsnorm,attention_scale=1.0", {"norm_type": "rmsnorm", "attention_scale": 1.0}),
        ("initializer=fan_in, decoder_output_scale=0.125", {"initializer": "fan_in", "decoder_output_scale": 0.125}),
        ("alibi_max_penalty=null", {"alibi_max_penalty": None}),
    ],
)
def test_config_overrides_reach_the_config(overrides, expected):
    from hf_longctx.training.trainer import build_model

    model = build_model(ModelArguments(config_overrides=overrides), build_tokenizer(), 256, trained_length=64)
    for name, value in expected.items():
        assert getattr(model.config, name) == value


@pytest.mark.parametrize("overrides, pattern", [("norm_typ=rmsnorm", "did you mean `norm_type`"), ("rmsnorm", "is not `field=value`")])
def test_bad_config_overrides_are_refused(overrides, pattern):
    from hf_longctx.training.trainer import build_model

    with pytest.raises(ValueError, match=pattern):
        build_model(ModelArguments(config_overrides=overrides), build_tokenizer(), 256)


def test_an_override_of_a_flag_the_user_also_gave_is_refused():
    """`--d_model 128 --config_overrides d_model=32` built d_model 32 in silence; the same value twice is fine."""
    from hf_longctx.training.trainer import build_model

    with pytest.raises(ValueError, match=r"`config_overrides` sets `d_model`=32, which is also given as --d_model 128"):
        build_model(ModelArguments(d_model=128, config_overrides="d_model=32"), build_tokenizer(), 256)
    model = build_model(ModelArguments(d_model=128, config_overrides="d_model=128"), build_tokenizer(), 256)
    assert model.config.d_model == 128
    model = build_model(ModelArguments(config_overrides="decoder_position_embedding_type=none"), build_tokenizer(), 256)
    assert model.config.decoder_position_embedding_type == "none", "a flag left at its default is overridden"


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        ("foo_bar=1", r"`foo_bar` is not a field of LongCtxConfig"),
        ("d_modle=1", r"did you mean `d_model`"),
    ],
)
def test_config_overrides_name_only_fields(overrides, pattern):
    from hf_longctx.training.trainer import build_model

    with pytest.raises(ValueError, match=pattern):
        build_model(ModelArguments(config_overrides=overrides), build_tokenizer(), 256)


def test_config_overrides_replace_the_built_values_and_take_dicts():
    from hf_longctx.training.trainer import build_model

    model = build_model(
        ModelArguments(position_embedding_type="rope", config_overrides='d_model=128,attention_scale=1,rope_parameters={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}'),
        build_tokenizer(), 256, trained_length=64,
    )  # fmt: skip
    assert model.config.d_model == 128 and model.config.attention_scale == 1.0
    assert model.config.rope_parameters["rope_type"] == "yarn" and model.config.rope_parameters["factor"] == 4.0


def test_a_default_training_model_warns_about_no_unused_option(caplog):
    import logging

    from hf_longctx.training.trainer import build_model

    logging.Logger.warning_once.cache_clear()
    for encoding in ("alibi", "relative", "rope", "learned", "sinusoidal"):
        with caplog.at_level("WARNING"):
            build_model(ModelArguments(position_embedding_type=encoding), build_tokenizer(), 256, trained_length=64)
    assert "does nothing" not in caplog.text


def test_cli_takes_no_abbreviated_flags(tmp_path):
    from hf_longctx.cli import parse_train_args, parse_train_text_args

    with pytest.raises(ValueError, match=r"not used by the HfArgumentParser: \['--save_step'"):
        parse_train_args(["--output_dir", str(tmp_path), "--save_step", "3"])
    _, _, text_training = parse_train_text_args(["--text_file", "x.txt", "--output_dir", str(tmp_path), "--eval_steps", "5"])
    assert text_training.eval_strategy == "steps" and text_training.eval_steps == 5

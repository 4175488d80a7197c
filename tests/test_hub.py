"""Model card, hub staging (`scripts/push_to_hub.py --dry_run`), the upload calls, and the console commands.

A tiny model trained for 2 steps (under a second) is staged for upload; a fresh process where hf_longctx cannot be
imported loads the staged folder with trust_remote_code and must generate the same ids as the model in this process.
About 20 s on 2 CPU cores, most of it the two subprocesses' imports.
"""

import json
import re
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from test_text_data import TINY_MODEL, text_args, tiny_training_args
from test_training import tiny_run_args
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from hf_longctx import cli
from hf_longctx.data.tasks import make_task
from hf_longctx.hub import model_card, push
from hf_longctx.hub.model_card import build_card_data, check_model_card, write_model_card
from hf_longctx.training.text import train_text
from hf_longctx.training.trainer import ModelArguments, train

REPO = Path(__file__).resolve().parent.parent
PUSH_SCRIPT = [sys.executable, str(REPO / "scripts" / "push_to_hub.py")]
MODEL_FILES = {
    "README.md",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "configuration_longctx.py",
    "modeling_longctx.py",
    "positions.py",
    "attention.py",
} | ({model_card.BENCHMARK_PLOT} if (model_card.BENCHMARK_DIR / model_card.BENCHMARK_PLOT).is_file() else set())
REPO_ID = "someone/longctx-tiny"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder written by `train()` (2 steps, passkey, ALiBi), and its results."""
    folder = tmp_path_factory.mktemp("trained")
    results = train(*tiny_run_args(folder, max_steps=2, eval_strategy="no"))
    return folder, results


def subprocess_env(tmp_path) -> dict:
    return {
        "HF_HUB_OFFLINE": "1",
        "PATH": "/usr/bin:/bin",
        "HF_HOME": str(tmp_path / "hf_home"),
        "OMP_NUM_THREADS": "1",
    }


# ----------------------------------------------------------------------------------------------- model card


def test_model_card_metadata_round_trips_and_holds_the_results(trained):
    folder, results = trained
    card = ModelCard.load(folder / "README.md")
    config = json.loads((folder / "config.json").read_text())
    assert card.data.to_dict() == build_card_data(results, config, str(folder)).to_dict()
    assert (card.data.library_name, card.data.pipeline_tag) == ("transformers", "text2text-generation")
    assert {"hf_longctx", "alibi-positions", "passkey"} <= set(card.data.tags)
    assert card.data.metrics == ["exact_match", "token_accuracy"]

    # The model-index holds every evaluation length and metric, with the recorded values.
    recorded = {(r.dataset_config, r.metric_type): r.metric_value for r in card.data.eval_results}
    expected = {
        (f"length-{length}", metric): round(scores[metric], 4)
        for length, scores in results["eval"].items()
        for metric in ("exact_match", "token_accuracy")
    }
    assert recorded == expected
    assert card.data.model_name == str(folder)

    # The body: the results table, how to load the folder, the command that made it.
    for length, scores in results["eval"].items():
        ratio = int(length) / results["data_args"]["train_max_len"]
        assert f"| {length} | {ratio:.1f} | {scores['exact_match']:.3f} |" in card.text
    assert f'AutoModelForSeq2SeqLM.from_pretrained("{folder}", trust_remote_code=True)' in card.text
    assert f'AutoTokenizer.from_pretrained("{folder}")' in card.text
    assert "pytest" in card.text  # the command of this run
    assert "`relative_bias`: T5's learned bucket bias" in card.text and "scripts/ablate_trunk.py" in card.text
    assert re.search(r"\*\*Optimisation:\*\* \d+ steps in \d+ s", card.text)
    assert "| attention | SDPA by default" in card.text and "(attention score bias)" in card.text
    check_model_card(folder / "README.md")  # the offline validation the dry run uses


def test_the_card_says_which_cross_attention_positions_the_model_has(trained, tmp_path):
    folder, results = trained
    card = ModelCard.load(folder / "README.md").text
    assert "| cross-attention positions | none |" in card and "the option\n  `cross_attention_alignment`" in card
    config = {**json.loads((folder / "config.json").read_text()), "cross_attention_alignment": True,
              "cross_attention_alignment_max_distance": 16}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    write_model_card(tmp_path, results, None)
    aligned = ModelCard.load(tmp_path / "README.md").text
    assert "| cross-attention positions | `cross_attention_alignment`: a learned bias" in aligned and "buckets to 16 |" in aligned
    assert "Cross-attention carries no positions" not in aligned


def test_card_shows_the_project_benchmark_table_and_plot(trained, tmp_path, monkeypatch):
    folder, results = trained
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "accuracy_vs_length.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    rows = [
        {"name": "alibi", "task": "passkey", "eval": {"64": {"exact_match": 1.0}, "1024": {"exact_match": 0.815}}},
        {"name": "alibi+logn", "task": "passkey", "eval": {"64": {"exact_match": 1.0}, "1024": {"exact_match": 1.0}}},
        {"name": "alibi@copy", "task": "copy", "eval": {"64": {"exact_match": 0.5}}},
    ]
    protocol = {"train_min_len": 16, "train_max_len": 64, "num_eval": 50}
    bench_json = {"command": "python scripts/bench_extrapolation.py", "environment": {"git_commit": "abc1234"}}
    (bench / "results.json").write_text(json.dumps({**bench_json, "protocol": protocol, "rows": rows}))
    monkeypatch.setattr(model_card, "BENCHMARK_DIR", bench)

    card = write_model_card(copy, results, command="hf-longctx-train")
    assert "| variant | 64 (1x) | 1024 (16x) |" in card.text
    assert "| alibi | 1.00 | 0.81 |" in card.text and "| alibi+logn | 1.00 | 1.00 |" in card.text
    assert "alibi@copy" not in card.text, "the card's table is the passkey benchmark"
    assert "![exact match against source length, one line per encoding](accuracy_vs_length.png)" in card.text
    assert (copy / "accuracy_vs_length.png").read_bytes() == (bench / "accuracy_vs_length.png").read_bytes()
    assert "Made by `python scripts/bench_extrapolation.py` (hf_longctx commit abc1234)" in card.text
    assert "greedy exact match on 50 examples per length" in card.text

    # a model trained on something else describes itself: no passkey table, no plot
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    (other / "accuracy_vs_length.png").unlink(missing_ok=True)
    card = write_model_card(other, {**results, "task": "kv_recall"}, command="hf-longctx-train")
    assert "| alibi+logn | 1.00 | 1.00 |" not in card.text and "scripts/bench_extrapolation.py" not in card.text
    assert not (other / "accuracy_vs_length.png").exists()


def test_text_training_writes_a_card_with_the_held_out_scores(tmp_path):
    args = text_args(num_eval_examples=8, max_train_examples=32)
    results = train_text(ModelArguments(**TINY_MODEL), args, tiny_training_args(tmp_path, max_steps=2))
    card = check_model_card(tmp_path / "README.md")
    assert {"hf_longctx", "alibi-positions", "denoising"} <= set(card.data.tags)
    recorded = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert recorded == {m: round(results["eval"][m], 4) for m in ("exact_match", "token_accuracy", "chrf", "bleu")}
    assert f"| Loss | {results['eval']['loss']:.4f} |" in card.text and "<extra_id_" in card.text  # example input
    assert re.search(r"Outputs \(greedy decoding, at most \d+ tokens\) on 8 held-out examples", card.text) and "T5 span corruption on `text`" in card.text
    assert re.search(r"- \*\*Data:\*\* `.*`, 32\s+training examples, 8 held out\.", card.text)


def test_model_card_check_rejects_a_card_without_metadata(tmp_path):
    (tmp_path / "README.md").write_text("# A model\n\nNo metadata.\n")
    with pytest.raises(ValueError, match="no YAML metadata"):
        check_model_card(tmp_path / "README.md")


# -------------------------------------------------------------------------------------------------- dry run

REMOTE_GENERATE = textwrap.dedent(
    """
    import sys
    sys.modules["hf_longctx"] = None  # any import of the package now fails: only the folder's own code can run
    import json, torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    folder, sources, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(sources, return_tensors="pt", padding=True)
    with torch.no_grad():
        generated = model.generate(**batch)  # lengths and ids from the folder's generation_config.json
        logits = model(**batch, decoder_input_ids=generated).logits
    torch.save({"generated": generated, "logits": logits, "module": type(model).__module__}, out)
    """
)


def test_dry_run_stages_a_folder_that_loads_and_generates_without_the_package(trained, tmp_path):
    folder, results = trained
    staging = tmp_path / "staging"
    run = subprocess.run(
        [*PUSH_SCRIPT, "--folder", str(folder), "--repo_id", REPO_ID, "--dry_run", "--staging_dir", str(staging)],
        capture_output=True,
        text=True,
        env=subprocess_env(tmp_path),
    )
    assert run.returncode == 0, run.stderr
    staged = {p.name for p in staging.iterdir()}
    assert staged == MODEL_FILES | {"results.json", "results.md"}  # no training_args.bin (a pickle)
    assert all(f"  {name}" in run.stdout for name in staged) and "nothing uploaded" in run.stdout

    # The staged card points at the repo; the trained folder's card is untouched.
    card = ModelCard.load(staging / "README.md")
    assert card.data.model_name == REPO_ID
    assert f'from_pretrained("{REPO_ID}", trust_remote_code=True)' in card.text
    assert ModelCard.load(folder / "README.md").data.model_name == str(folder)

    # A fresh process, elsewhere, without hf_longctx, loads the staged folder and generates.
    sources = list(make_task("passkey", 3, 20, 40, seed=7)["source"])
    out = tmp_path / "out.pt"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    subprocess.run(
        [sys.executable, "-c", REMOTE_GENERATE, str(staging), json.dumps(sources), str(out)],
        check=True,
        env=subprocess_env(tmp_path),
        cwd=cwd,
    )
    remote = torch.load(out)
    assert remote["module"].startswith("transformers_modules"), remote["module"]

    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()  # this process: hf_longctx's own classes
    assert type(model).__module__.startswith("hf_longctx")
    batch = AutoTokenizer.from_pretrained(folder)(sources, return_tensors="pt", padding=True)
    with torch.no_grad():
        generated = model.generate(**batch)
        logits = model(**batch, decoder_input_ids=generated).logits
    assert generated.shape[1] <= model.generation_config.max_length
    assert torch.equal(remote["generated"], generated)
    torch.testing.assert_close(remote["logits"], logits, rtol=0, atol=1e-5)


def _break_auto_map(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    del config["auto_map"]["AutoModelForSeq2SeqLM"]
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "remove, message",
    [
        ("model.safetensors", "missing model.safetensors"),
        ("positions.py", r"missing positions.py \(imported by modeling_longctx.py\)"),
        ("modeling_longctx.py", "missing modeling_longctx.py"),
        ("tokenizer.json", "missing tokenizer.json"),
        ("generation_config.json", "missing generation_config.json"),
        ("README.md", "No model card at"),
        (_break_auto_map, "`auto_map` lacks AutoModelForSeq2SeqLM"),
    ],
    ids=["weights", "relative-import", "modeling", "tokenizer", "generation-config", "card", "auto-map"],
)
def test_incomplete_folder_fails_naming_what_is_missing(trained, tmp_path, remove, message):
    folder = tmp_path / "model"
    shutil.copytree(trained[0], folder)
    if callable(remove):
        remove(folder)
    else:
        (folder / remove).unlink()
    with pytest.raises(push.IncompleteModelFolderError, match=message):
        push.push_model_folder(folder, REPO_ID, dry_run=True, staging_dir=tmp_path / "staging")
    assert not (tmp_path / "staging").exists(), "nothing is staged from an incomplete folder"


def test_dry_run_script_exits_with_the_message(trained, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(trained[0], folder)
    (folder / "tokenizer_config.json").unlink()
    (folder / "model.safetensors").unlink()
    run = subprocess.run(
        [*PUSH_SCRIPT, "--folder", str(folder), "--repo_id", REPO_ID, "--dry-run"],
        capture_output=True,
        text=True,
        env=subprocess_env(tmp_path),
    )
    assert run.returncode == 2
    assert "missing model.safetensors" in run.stderr and "missing tokenizer_config.json" in run.stderr
    assert "Traceback" not in run.stderr


# ------------------------------------------------------------------------------------------------- upload


class RecordingApi:
    """Stands in for `huggingface_hub.HfApi`: records the calls, and what the upload folder holds at upload time."""

    calls: list = []

    def __init__(self, token=None):
        pass

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, repo_id, folder_path, **kwargs):
        files = sorted(p.name for p in Path(folder_path).iterdir())
        self.calls.append(("upload_folder", repo_id, {**kwargs, "files": files, "folder_path": folder_path}))
        return f"https://huggingface.co/{repo_id}/commit/0"


def _copy_of(folder: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    return copy


def test_logs_and_training_arguments_are_not_staged(trained, tmp_path):
    from hf_longctx.hub.push import files_to_upload

    folder = _copy_of(trained[0], tmp_path)
    for name in ("train.log", "nohup.out", "run.err"):
        (folder / name).write_text(f"{folder}: step 1\n")
    names = set(files_to_upload(folder))
    assert (folder / "training_args.json").is_file() and "training_args.json" not in names
    assert not names & {"train.log", "nohup.out", "run.err"}
    assert names == MODEL_FILES | {"results.json", "results.md"}


def test_a_link_leaving_the_folder_is_not_followed(trained, tmp_path, caplog):
    from hf_longctx.hub.push import files_to_upload

    folder = _copy_of(trained[0], tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("private notes")
    (folder / "notes.txt").symlink_to(secret)
    (folder / "card_link.md").symlink_to(folder / "README.md")  # a link inside the folder is fine
    with caplog.at_level("WARNING"):
        names = files_to_upload(folder)
    assert "notes.txt" not in names and "card_link.md" in names
    assert "Not uploading notes.txt" in caplog.text and str(secret) in caplog.text


def test_a_file_with_a_hub_token_is_refused_naming_it(trained, tmp_path):
    from hf_longctx.hub.push import stage_model_folder

    folder = _copy_of(trained[0], tmp_path)
    (folder / "notes.txt").write_text("token = hf_" + "aB3" * 12 + "\n")
    with pytest.raises(ValueError, match=r"notes.txt holds a hub access token"):
        stage_model_folder(folder, tmp_path / "staging", REPO_ID)


def test_a_hub_token_in_the_weights_metadata_is_refused_too(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    from hf_longctx.hub.push import files_to_upload

    folder = _copy_of(trained[0], tmp_path)
    weights = load_file(folder / "model.safetensors")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt", "note": "hf_" + "aB3" * 12})
    with pytest.raises(ValueError, match=r"model.safetensors holds a hub access token"):
        files_to_upload(folder)


def test_the_model_card_names_no_absolute_path_of_this_machine(tmp_path, monkeypatch):
    from hf_longctx.hub.model_card import invocation_command

    monkeypatch.chdir(REPO)
    command = invocation_command([str(REPO / "scripts" / "train.py"), "--output_dir", str(REPO / "runs" / "x"), f"--logging_dir={REPO}/logs"])
    assert command == "python scripts/train.py --output_dir runs/x --logging_dir=logs"
    assert str(REPO) not in command


def test_push_creates_the_repo_and_uploads_the_staged_folder(trained, monkeypatch):
    import huggingface_hub

    RecordingApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    result = push.push_model_folder(trained[0], REPO_ID, private=True, commit_message="tiny")

    (create, repo_id, create_kwargs), (upload, _, upload_kwargs) = RecordingApi.calls
    assert (create, repo_id, upload) == ("create_repo", REPO_ID, "upload_folder")
    assert create_kwargs["exist_ok"] and create_kwargs["private"]
    assert upload_kwargs["commit_message"] == "tiny"
    assert upload_kwargs["files"] == result.files == sorted(MODEL_FILES | {"results.json", "results.md"})
    assert result.url.endswith("/commit/0")
    assert not Path(upload_kwargs["folder_path"]).exists(), "the temporary staging folder is removed after upload"


def test_push_refuses_to_upload_offline(trained, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        push.push_model_folder(trained[0], REPO_ID)


# ----------------------------------------------------------------------------------------- console commands


def test_console_commands_point_at_library_mains():
    # `make test` installs the package (`pip install -e ".[dev]"`), so the entry points are in its metadata.
    commands = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.name.startswith("hf-longctx-")}
    assert {name: ep.value for name, ep in commands.items()} == {
        "hf-longctx-train": "hf_longctx.cli:train_main",
        "hf-longctx-train-text": "hf_longctx.cli:train_text_main",
        "hf-longctx-push": "hf_longctx.cli:push_main",
        "hf-longctx-extend": "hf_longctx.cli:extend_main",
    }
    assert all(callable(ep.load()) for ep in commands.values())


def test_push_arguments_parse():
    args = cli.parse_push_args(["--folder", "runs/demo", "--repo_id", REPO_ID, "--dry-run"])
    assert (args.folder, args.repo_id, args.dry_run, args.private) == ("runs/demo", REPO_ID, True, False)
    with pytest.raises(SystemExit):
        cli.parse_push_args(["--folder", "runs/demo"])  # repo_id is required


def test_a_rope_card_says_why_it_was_initialised_as_t5_is(trained, tmp_path):
    folder, results = trained
    assert "initialised as T5 is" not in ModelCard.load(folder / "README.md").text  # the fixture is alibi
    config = {**json.loads((folder / "config.json").read_text()), "position_embedding_type": "rope",
              "decoder_position_embedding_type": "rope", "initializer": "fan_in", "encoder_conv_kernel": 4}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    write_model_card(tmp_path, {**results, "position_embedding_type": "rope"}, None)
    card = ModelCard.load(tmp_path / "README.md").text
    assert "initialised as T5 is (`initializer=\"fan_in\"`" in card and "7 of 8 runs (HF T5 of\nthe same size: 5 of 8)" in card
    config.update(position_embedding_type="relative", decoder_position_embedding_type="relative")
    (tmp_path / "config.json").write_text(json.dumps(config))
    write_model_card(tmp_path, {**results, "position_embedding_type": "relative"}, None)
    card = ModelCard.load(tmp_path / "README.md").text
    assert "initialised as T5 is (`initializer=\"fan_in\"`, relative's default)" in card and "7 of 8" not in card


def test_a_card_says_the_encoder_attends_locally(trained, tmp_path):
    folder, results = trained
    assert "encoder_local_radius" not in ModelCard.load(folder / "README.md").text
    config = {**json.loads((folder / "config.json").read_text()), "encoder_local_radius": 16}
    (tmp_path / "config.json").write_text(json.dumps(config))
    write_model_card(tmp_path, results, None)
    card = ModelCard.load(tmp_path / "README.md").text
    assert "Each encoder token attends only to the tokens within 16 positions of\nit (`encoder_local_radius`" in card

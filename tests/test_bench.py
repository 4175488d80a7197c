"""Smoke version of the length-extrapolation benchmark (scripts/bench_extrapolation.py): tiny budget, 2 lengths.

Checks that the protocol runs end to end (train with the stop-at-accuracy callback, rope rescaled at inference,
randomized positions, a second task) and writes the JSON, the markdown table and the PNG plots. The numbers of a
20-step model mean nothing; the committed results/extrapolation/ hold the real run.
"""

import json
import sys
from pathlib import Path

import pytest

from hf_longctx.bench.extrapolation import BenchArguments, StopAtAccuracy, plan, rope_parameters_for
from hf_longctx.bench.report import markdown

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def test_plan_lists_rope_scalings_randomized_and_second_task():
    args = BenchArguments(
        encodings=["alibi", "rope"],
        logn=["rope"],
        randomized=["sinusoidal"],
        second_task_encodings=["alibi"],
    )
    names = [row["name"] for row in plan(args)]
    assert names == [
        "alibi",
        "rope",
        "rope+linear",
        "rope+dynamic",
        "rope+yarn",
        "rope+logn",
        "rope+linear+logn",
        "rope+dynamic+logn",
        "rope+yarn+logn",
        "sinusoidal+randomized",
        "alibi@kv_recall",
    ]
    assert [row.get("logn", False) for row in plan(args)][4:6] == [False, True]


def test_seeds_repeat_every_variant_and_the_table_gives_mean_and_worst_seed():
    args = BenchArguments(encodings=["alibi", "rope"], rope_scalings=["yarn"], logn=[], second_task=None, seeds=[1, 2])
    rows = plan(args)
    assert [row["name"] for row in rows] == [
        "alibi seed=1", "alibi seed=2", "rope seed=1", "rope seed=2", "rope+yarn seed=1", "rope+yarn seed=2",
    ]  # fmt: skip
    assert {row["variant"] for row in rows} == {"alibi", "rope", "rope+yarn"}

    def row(name, seed, score, solved):
        training = {"steps": 10, "solved_at": solved, "in_distribution_exact_match": 1.0}
        return {"name": f"{name} seed={seed}", "variant": name, "seed": seed, "task": "passkey", "encoding": name,
                "randomized": False, "scaling": None, "training": training, "eval": {"128": {"exact_match": score}}}  # fmt: skip

    results = {"protocol": vars(args), "command": "bench", "environment": {}, "rows": [
        row("alibi", 1, 1.0, 250), row("alibi", 2, 0.5, None), row("rope", 1, 0.25, 500),
    ]}  # fmt: skip
    table = markdown(results)
    assert "| alibi | 1, 2 | 1/2 | 0.75 (0.50) |" in table
    assert "| rope |" not in table, "a variant with one seed has no summary line"


def test_rope_parameters_scale_only_past_the_trained_length():
    assert rope_parameters_for("linear", 64, 64) is None
    assert rope_parameters_for(None, 1024, 64) is None
    assert rope_parameters_for("yarn", 256, 64) == {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    assert rope_parameters_for("dynamic", 256, 64)["rope_type"] == "dynamic"


def test_stop_at_accuracy_stops_once_and_records_the_step():
    class State:
        global_step = 250

    class Control:
        should_training_stop = False

    stopper, control = StopAtAccuracy(0.99), Control()
    stopper.on_evaluate(None, State(), control, metrics={"eval_exact_match": 0.5})
    assert not control.should_training_stop and stopper.solved_at is None
    stopper.on_evaluate(None, State(), control, metrics={"eval_exact_match": 0.995})
    assert control.should_training_stop and stopper.solved_at == 250

    recorder, control = StopAtAccuracy(0.99, stop=False), Control()  # the default protocol: full budget, step recorded
    recorder.on_evaluate(None, State(), control, metrics={"eval_exact_match": 1.0})
    assert not control.should_training_stop and recorder.solved_at == 250


@pytest.mark.slow
def test_smoke_benchmark_writes_json_markdown_and_plots(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_extrapolation

    out = tmp_path / "results"
    argv = [
        "--encodings", "alibi", "rope", "--rope_scalings", "linear", "--logn", "alibi", "--randomized", "sinusoidal",
        "--second_task", "kv_recall", "--second_task_encodings", "relative",
        "--steps", "6", "--eval_every", "3", "--num_eval", "4", "--num_train", "256", "--batch_size", "8",
        "--lengths", "32", "128", "--output_dir", str(out), "--work_dir", str(tmp_path / "runs"),
    ]  # fmt: skip
    bench_extrapolation.main(argv)

    results = json.loads((out / "results.json").read_text())
    names = [row["name"] for row in results["rows"]]
    assert names == ["alibi", "alibi+logn", "rope", "rope+linear", "sinusoidal+randomized", "relative@kv_recall"]
    assert results["command"].startswith("python scripts/bench_extrapolation.py --encodings alibi rope")
    assert results["protocol"]["steps"] == 6 and results["protocol"]["lengths"] == [32, 128]
    for row in results["rows"]:
        assert set(row["eval"]) == {"32", "128"}
        assert 0 < row["training"]["steps"] <= 6
        for scores in row["eval"].values():
            assert 0.0 <= scores["exact_match"] <= 1.0 and scores["num_samples"] == 4
    assert len(results["rows"][0]["eval"]["128"]["exact_match_by_depth"]) == 5
    # rope+linear is the trained rope folder rescaled only past the training length
    assert "rope_parameters" not in results["rows"][3]["eval"]["32"]
    assert results["rows"][3]["eval"]["128"]["rope_parameters"]["factor"] == 2.0
    # max_position_embeddings has HF's one meaning: rope's trained length (dynamic NTK scales past it), a table's rows
    rope_config = json.loads((tmp_path / "runs" / "passkey-rope" / "config.json").read_text())
    assert rope_config["max_position_embeddings"] == results["protocol"]["train_max_len"]

    table = (out / "results.md").read_text()
    assert table == markdown(results)
    assert "| rope+linear | passkey |" in table and "Command: `python scripts/bench_extrapolation.py" in table
    for png in ("accuracy_vs_length.png", "accuracy_vs_length_kv_recall.png", "depth_heatmap.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sys.modules["bench_extrapolation"]  # the script stays importable (thin wrapper over hf_longctx.bench.extrapolation)

    # --resume keeps rows only if they were made as asked: another budget is refused, another selection adds rows
    with pytest.raises(ValueError, match=r"results.json was made with `steps`=6, and these arguments ask for 7: its "
                       r"results would stand for a protocol they were not made with.*or --steps 6"):  # fmt: skip
        bench_extrapolation.main([*argv, "--steps", "7", "--resume", "true"])
    resumed = bench_extrapolation.main([argv[0], "alibi", "rope", "kerple", *argv[3:], "--resume", "true"])
    assert sorted(row["name"] for row in resumed["rows"]) == sorted([*names, "kerple"])
    assert [row for row in resumed["rows"] if row["name"] != "kerple"] == results["rows"]  # kept as they were


@pytest.mark.parametrize(
    "script,argv,expected",
    [
        (
            "profile_attention",
            ["--batch", "1", "--length", "32", "--repeats", "1"],
            "| alibi (alibi_max_penalty=None) |",
        ),
        (
            "profile_generation",
            ["--batch_size", "1", "--source_length", "16", "--new_tokens", "2"],
            "| learned |",
        ),
    ],
)
def test_profile_scripts_print_their_tables(script, argv, expected, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    module = __import__(script)
    monkeypatch.setattr(sys, "argv", [script, *argv])
    module.main()
    assert expected in capsys.readouterr().out


def test_trunk_ablation_writes_a_row_per_run_and_skips_done_rows(tmp_path):
    import json

    from hf_longctx.bench.ablation import VARIANTS, AblationArguments, run_ablation

    args = AblationArguments(
        variants=["t5", "t5trunk/alibi"], steps=4, eval_every=2, num_eval=4, batch_size=8, d_model=32, d_ff=64,
        output_dir=str(tmp_path / "out"), work_dir=str(tmp_path / "runs"),
    )  # fmt: skip
    rows = run_ablation(args, command="test")
    assert [r["variant"] for r in rows] == ["t5", "t5trunk/alibi"]
    assert rows[0]["model_args"]["reference"] == "t5" and rows[1]["model_args"]["config_overrides"]
    assert all(r["steps"] == 4 and len(r["history"]) == 2 for r in rows)
    saved = json.loads((tmp_path / "out" / "rows" / "t5trunk_alibi_lr=0.002_seed=42.json").read_text())
    assert saved["command"] == "test" and saved["protocol"]["task"] == "multikey"
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| multikey | t5 | 0.002 | 42 |" in table and "| multikey | t5trunk/alibi |" in table
    assert run_ablation(args, command="test") == []  # both rows are there: nothing retrained
    assert set(VARIANTS) >= {"t5", "bart", "default/alibi", "plain/alibi", "t5trunk/rope", "plain+init/alibi"}
    with pytest.raises(ValueError, match="`variants`: unknown nope"):
        AblationArguments(variants=["nope"])
    with pytest.raises(ValueError, match="`lengths` are the extrapolation lengths"):
        AblationArguments(lengths=[64])
    with pytest.raises(ValueError, match=r"`learning_rates` 0 trains nothing \(the weights stay as initialised\)"):
        AblationArguments(learning_rates=[1e-3, 0.0])

    # asked for lengths later, the done rows are evaluated from their folders, not retrained
    args.lengths = [80]
    assert run_ablation(args, command="test") == []
    saved = json.loads((tmp_path / "out" / "rows" / "t5trunk_alibi_lr=0.002_seed=42.json").read_text())
    assert set(saved["extrapolation"]) == {"as trained", "logn"} and "80" in saved["extrapolation"]["logn"]
    t5 = json.loads((tmp_path / "out" / "rows" / "t5_lr=0.002_seed=42.json").read_text())
    assert set(t5["extrapolation"]) == {"as trained"}, "T5 has no log-length scaling"
    assert "80 (1.25x)" in (tmp_path / "out" / "results.md").read_text()
    # a row whose model folder is gone (a fresh clone has the rows, not the models) is trained again for new lengths
    import shutil

    shutil.rmtree(tmp_path / "runs" / "t5_lr=0.002_seed=42")
    args.lengths = [80, 96]
    assert [r["variant"] for r in run_ablation(args, command="test")] == ["t5"]
    saved = json.loads((tmp_path / "out" / "rows" / "t5trunk_alibi_lr=0.002_seed=42.json").read_text())
    assert set(saved["extrapolation"]["logn"]) == {"80", "96"}, "the other row was evaluated from its folder"
    # a row made under another protocol is not passed off as this one's
    args.steps = 5
    with pytest.raises(ValueError, match=r"was made with `steps`=4, and these arguments ask for 5"):
        run_ablation(args, command="test")


def test_trunk_ablation_curves_average_the_seeds_and_the_headline_plot_keeps_the_best_of_each_encoding(tmp_path):
    """Extrapolation curves: one per (variant, setting, lr), mean / worst / best over its seeds; the headline plot
    holds the best curve of each encoding and each HF reference, the second plot every curve."""
    from hf_longctx.bench.ablation import ALL_PLOT, HEADLINE_PLOT, extrapolation_curves, headline_curves, write_table

    def row(variant, seed, scores, logn=None):
        extrapolation = {"as trained": dict(zip(("128", "256"), scores, strict=True))}
        if logn:
            extrapolation["logn"] = dict(zip(("128", "256"), logn, strict=True))
        protocol = {"task": "passkey", "train_min_len": 24, "train_max_len": 64}
        return {"variant": variant, "learning_rate": 0.002, "seed": seed, "extrapolation": extrapolation,
                "protocol": protocol, "solved_at": 500, "best_exact_match": 1.0, "steps": 500, "train_seconds": 1,
                "environment": {"git_commit": "abc"}}  # fmt: skip

    rows = [
        row("t5", 1, [0.9, 0.1]), row("t5", 2, [0.7, 0.3]),
        row("default/alibi", 1, [1.0, 0.8], logn=[1.0, 1.0]), row("default/alibi", 2, [0.9, 0.6], logn=[1.0, 0.9]),
        row("plain/alibi", 1, [0.2, 0.1]),
    ]  # fmt: skip
    curves = {c["label"]: c for c in extrapolation_curves(rows)}
    assert set(curves) == {"HF T5 (relative) (2 seeds)", "default/alibi (2 seeds)", "default/alibi +logn (2 seeds)",
                           "plain/alibi (1 seeds)"}  # fmt: skip
    t5 = curves["HF T5 (relative) (2 seeds)"]
    assert t5["lengths"] == [128, 256] and t5["family"] == "t5"
    assert t5["mean"] == pytest.approx([0.8, 0.2]) and t5["worst"] == [0.7, 0.1] and t5["best"] == [0.9, 0.3]
    assert curves["default/alibi +logn (2 seeds)"]["family"] == "alibi"
    headline = [c["label"] for c in headline_curves(extrapolation_curves(rows))]
    assert headline == ["HF T5 (relative) (2 seeds)", "default/alibi +logn (2 seeds)"]  # the best alibi curve

    pytest.importorskip("matplotlib")
    for r in rows:
        (tmp_path / "rows").mkdir(exist_ok=True)
        (tmp_path / "rows" / f"{r['variant'].replace('/', '_')}_{r['seed']}.json").write_text(json.dumps(r))
    write_table(tmp_path)
    for name in (HEADLINE_PLOT, ALL_PLOT):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hf_t5_converted_before_training_trains_as_hf_t5_does(tmp_path):
    """`t5convert/relative`: HF T5 with the `t5` row's initial weights, converted into hf_longctx, then trained by
    the same recipe. Its trained weights are T5's (converted): hf_longctx's code computes and learns what T5's does."""
    from transformers import AutoModelForSeq2SeqLM

    from hf_longctx.bench.ablation import AblationArguments, run_ablation
    from hf_longctx.conversion.convert import convert_model

    args = AblationArguments(
        variants=["t5", "t5convert/relative"], steps=6, eval_every=3, num_eval=4, batch_size=8, d_model=32, d_ff=64,
        output_dir=str(tmp_path / "out"), work_dir=str(tmp_path / "runs"),
    )  # fmt: skip
    run_ablation(args, command="test")
    t5 = convert_model(AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "runs" / "t5_lr=0.002_seed=42"))
    converted = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "runs" / "t5convert_relative_lr=0.002_seed=42")
    theirs, ours = t5.state_dict(), converted.state_dict()
    assert theirs.keys() == ours.keys()
    assert max((theirs[k].float() - ours[k].float()).abs().max().item() for k in theirs) < 1e-4


def test_trunk_ablation_sizes_reference_tables_for_its_lengths_and_refuses_longer(tmp_path):
    """BART's learned table (and Marian's sinusoids) hold `max_position_embeddings` rows: a row is built with as
    many as its longest evaluation; asked later for a longer one, it says so instead of an IndexError."""
    from hf_longctx.bench.ablation import AblationArguments, run_ablation

    args = AblationArguments(
        variants=["bart", "marian"], task="passkey", steps=2, eval_every=2, num_eval=2, batch_size=4, d_model=32,
        d_ff=64, lengths=[80], output_dir=str(tmp_path / "out"), work_dir=str(tmp_path / "runs"),
    )  # fmt: skip
    rows = run_ablation(args, command="test")
    assert [set(r["extrapolation"]) for r in rows] == [{"as trained"}] * 2
    assert all(r["model_args"]["max_position_embeddings"] == 80 for r in rows)
    args.lengths = [96]
    with pytest.raises(ValueError, match=r"bart lr=0.002 seed=42: its position table has 80 rows"):
        run_ablation(args, command="test")


@pytest.mark.slow
def test_realtext_quick_run_scores_the_same_targets_at_each_length_and_reports_tables_that_cannot(tmp_path, monkeypatch):
    """`scripts/bench_realtext.py --quick` (what CI runs of the real-text benchmark): each row scored at every
    length, for perplexity (A) and the needle (B); a table of positions (hf_longctx `learned`, HF BART) past its
    rows gets the error in its cell. `--resume` adds rows and, to rows made without it, benchmark B."""
    pytest.importorskip("matplotlib")
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_realtext

    out, runs = tmp_path / "results", tmp_path / "runs"
    quick = ["--quick", "--logn", "false", "--output_dir", str(out), "--work_dir", str(runs)]
    results = bench_realtext.main([*quick, "--encodings", "alibi", "learned", "--references", "bart", "--needle_steps", "0"])
    assert [row["name"] for row in results["rows"]] == ["alibi", "learned", "bart"]
    assert not any("needle" in row for row in results["rows"]) and not (out / "needle_depth_heatmap.png").exists()
    alibi, learned, bart = results["rows"]
    assert all(0 < alibi["eval"][n]["perplexity"] < 1e6 for n in ("48", "96"))
    assert alibi["eval"]["48"]["num_tokens"] == alibi["eval"]["96"]["num_tokens"] == 4 * 9  # same targets, + EOS
    for table in (learned, bart):
        assert table["eval"]["48"]["perplexity"] is not None
        assert table["eval"]["96"]["perplexity"] is None and table["eval"]["96"]["error"]
    assert json.loads((out / "results.json").read_text())["rows"] == results["rows"]
    table = (out / "results.md").read_text()
    assert "| learned |" in table and "learned at 96: " in table and "max_position_embeddings" in table
    assert (out / "perplexity_vs_length.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    common = [*quick, "--encodings", "alibi", "learned", "--references", "bart", "--resume", "true"]
    with pytest.raises(ValueError, match=r"was made with `steps`=4, and these arguments ask for 5"):
        bench_realtext.main([*common, "--steps", "5"])
    resumed = bench_realtext.main([*common, "--logn", "true", "--needle_samples", "10", "--needle_start", "trained"])
    assert [row["name"] for row in resumed["rows"]] == ["alibi", "alibi+logn", "learned", "learned+logn", "bart"]
    assert resumed["rows"][1]["training"] == alibi["training"] and len(resumed["commands"]) == 2
    assert resumed["rows"][0]["eval"] == alibi["eval"]  # kept, not rescored
    for row in resumed["rows"]:
        needle = row["needle"]
        assert needle["training"]["steps"] == 4 and (runs / "needle" / row["model"] / "config.json").is_file()
        for n in ("48", "96"):
            if needle["eval"][n]["exact_match"] is None:  # the tables past their rows
                assert row["model"] in ("learned", "bart") and n == "96" and needle["eval"][n]["error"]
                continue
            assert needle["eval"][n]["num_samples"] == 10 and 0 <= needle["eval"][n]["exact_match"] <= 1
            assert all(x is not None for x in needle["eval"][n]["exact_match_by_depth"])  # 2 needles in each bin
    assert resumed["rows"][1]["needle"]["training"] == resumed["rows"][0]["needle"]["training"]  # one model
    table = (out / "results.md").read_text()
    assert "## A needle in a real haystack" in table and "| learned+logn |" in table.split("## A needle")[1]
    assert (out / "needle_depth_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"was made with `needle_samples`=10, and these arguments ask for 200"):
        bench_realtext.main([*common, "--needle_samples", "200", "--needle_start", "trained"])  # B's protocol kept
    with pytest.raises(ValueError, match=r"was made with `needle_start`='trained', and these arguments ask for 'scratch'"):
        bench_realtext.main([*common, "--needle_samples", "10"])


@pytest.mark.slow
def test_realtext_needle_from_scratch_without_benchmark_a_and_config_overrides_on_the_hf_longctx_rows(tmp_path, monkeypatch):
    """`--steps 0` (no benchmark A) with benchmark B from scratch: each row's needle model is a fresh model of its
    architecture, `--config_overrides` set on the hf_longctx rows' models (A's and B's), the references as HF builds
    them; the report has B's table and heatmap and no perplexity."""
    pytest.importorskip("matplotlib")
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_realtext

    out, runs = tmp_path / "results", tmp_path / "runs"
    argv = ["--quick", "--encodings", "relative", "--references", "t5", "--output_dir", str(out), "--work_dir", str(runs)]
    results = bench_realtext.main([*argv, "--steps", "0", "--needle_samples", "10", "--config_overrides", "encoder_local_radius=4"])
    assert [row["name"] for row in results["rows"]] == ["relative", "relative+logn", "t5"]
    assert all("eval" not in row and "training" not in row for row in results["rows"])
    assert not (runs / "relative").exists() and not (out / "perplexity_vs_length.png").exists()
    assert json.loads((runs / "needle" / "relative" / "config.json").read_text())["encoder_local_radius"] == 4
    assert json.loads((runs / "needle" / "t5" / "config.json").read_text())["model_type"] == "t5"
    for row in results["rows"]:
        assert row["needle"]["training"]["steps"] == 4 and set(row["needle"]["eval"]) == {"48", "96"}
    table = (out / "results.md").read_text()
    assert "Perplexity" not in table and "| relative+logn |" in table and "fresh model" in table
    assert "encoder_local_radius=4" in table
    assert (out / "needle_depth_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"`config_overrides`: `encoder_local_radiu` is not a field of LongCtxConfig; "
                       r"did you mean `encoder_local_radius`\?"):  # fmt: skip
        bench_realtext.main([*argv, "--steps", "0", "--config_overrides", "encoder_local_radiu=4"])


def test_a_protocol_mismatch_names_the_field_and_a_flag_that_can_be_typed(tmp_path):
    from hf_longctx.bench.environment import check_same_protocol

    made = {"lengths": [48, 96], "steps": 4, "output_dir": "a"}
    check_same_protocol({"lengths": [48, 96], "steps": 4, "output_dir": "b"}, made, tmp_path, ["output_dir"])
    with pytest.raises(ValueError, match=r"was made with `lengths`=\[48, 96\], .* ask for \[48\]: .* or --lengths 48 96\.$"):
        check_same_protocol({"lengths": [48], "steps": 4}, made, tmp_path, ["output_dir"])
    with pytest.raises(ValueError, match=r"was made with `warmup`=7, .* or --warmup 7\.$"):  # a field it predates
        check_same_protocol({"warmup": 8}, made, tmp_path, [], defaults={"warmup": 7})


def test_realtext_needle_sources_too_short_for_the_needle_are_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_realtext

    quick = ["--quick", "--output_dir", str(tmp_path / "out"), "--work_dir", str(tmp_path / "runs")]
    with pytest.raises(ValueError, match=r"`needle_lengths`=20: benchmark B's needle and question take up to (\d+) "
                       r"tokens with this tokenizer \(vocab_size 400\); give at least \1, or --needle_steps 0"):  # fmt: skip
        bench_realtext.main([*quick, "--needle_lengths", "20", "96"])
    with pytest.raises(ValueError, match=r"`min_train_context`=30: .* give at least"):
        bench_realtext.main([*quick, "--min_train_context", "30"])
    with pytest.raises(ValueError, match=r"`needle_lengths` asks for 999999 tokens of a held-out book, and the longest"):
        bench_realtext.main([*quick, "--needle_lengths", "48", "999999"])
    with pytest.raises(ValueError, match=r"`lengths` asks for 1000008 tokens .* give shorter `lengths`"):
        bench_realtext.main([*quick, "--lengths", "48", "1000000"])
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"encodings": ["alibi"], "yarn": True}, r"`yarn` rescales the rope row, and `encodings` has no rope"),
        ({"encodings": [], "logn": True}, r"`logn` rescales hf_longctx rows, and `encodings` is empty"),
        ({"references": ["gpt2"]}, r"`references` \['gpt2'\] are not HF references here; valid: t5, bart, marian"),
        ({"min_train_context": 300}, r"`min_train_context`=300 exceeds `train_context`=256"),
        ({"needle_steps": -1}, r"`needle_steps`=-1: give a number of steps, or 0 for no benchmark B"),
        ({"needle_steps": 500, "needle_lengths": []}, r"`needle_steps`=500 asks for benchmark B, which needs `needle_lengths` \(given \[\]\)"),
        ({"needle_steps": 500, "needle_samples": 0}, r"and `needle_samples` >= 1 \(given 0\); or --needle_steps 0"),
        ({"needle_steps": 500, "needle_samples": 12}, r"`needle_samples`=12 must be a multiple of 5, the depth bins .* e.g. 10"),
        ({"needle_samples": 50, "needle_learning_rate": 3e-3},
         r"`needle_steps`=0 turns benchmark B off, which `needle_learning_rate`, `needle_samples` set up: drop them"),
        ({"needle_steps": 50}, r"`warmup_steps`=100 is not below `needle_steps`=50: .* lower --warmup_steps"),
        ({"steps": 100}, r"`warmup_steps`=100 is not below `steps`=100"),
        ({"steps": 0}, r"`steps`=0 trains no benchmark A model, so it needs benchmark B from scratch: give --needle_steps"),
        ({"steps": 0, "needle_steps": 500, "needle_start": "trained"},
         r"`steps`=0 trains no benchmark A model, and `needle_start`='trained' starts benchmark B from it"),
        ({"steps": 0, "needle_steps": 500, "lengths": [256, 512]},
         r"`steps`=0 turns benchmark A off, which `lengths` set up: drop it, or give --steps"),
        ({"steps": -5}, r"`steps`=-5: give a number of steps, or 0 for no benchmark A"),
        ({"needle_steps": 500, "needle_start": "fresh"}, r"`needle_start`='fresh' is not one of 'scratch', 'trained'"),
        ({"encodings": [], "config_overrides": "encoder_local_radius=16"},
         r"`config_overrides` sets LongCtxConfig fields of the hf_longctx rows, and `encodings` is empty"),
        ({"config_overrides": "encoder_local_radius"}, r"`config_overrides`: 'encoder_local_radius' is not `field=value`"),
        ({"learning_rate": 0.0}, r"`learning_rate` 0 trains nothing \(the weights stay as initialised\)"),
        ({"needle_steps": 500, "needle_learning_rate": -2e-3}, r"`needle_learning_rate` -0.002 is not a learning rate"),
    ],
)
def test_realtext_arguments_that_would_do_nothing_are_refused(kwargs, pattern):
    from hf_longctx.bench.realtext import RealTextArguments

    with pytest.raises(ValueError, match=pattern):
        RealTextArguments(**kwargs)
    assert RealTextArguments(encodings=["alibi"]).yarn is False and RealTextArguments().yarn is True



def test_resume_refuses_rows_built_under_other_config_defaults(tmp_path, caplog):
    """Results record the defaults their rows were built from; a default of a kept row's encoding that changed
    since is refused by name, and results made before the record get a warning (nothing can be checked)."""
    from hf_longctx.bench.environment import check_same_defaults, config_defaults

    made = config_defaults()
    assert made["relative"]["encoder_conv_kernel"] == 4 and "encoder_conv_kernel" not in made["alibi"]
    check_same_defaults(made, ["relative", "alibi"], tmp_path)
    made["relative"]["encoder_conv_kernel"] = 0  # as results made before 44cf45f would say
    check_same_defaults(made, ["alibi"], tmp_path)  # not a kept row's encoding: nothing to compare
    with pytest.raises(ValueError, match=r"has 'relative' rows built when `LongCtxConfig`'s default "
                       r"`encoder_conv_kernel` was 0; this code builds 4: new rows would not be comparable"):  # fmt: skip
        check_same_defaults(made, ["relative"], tmp_path)
    made = config_defaults()
    del made["base"]["cross_attention_alignment"]  # a field added since, whose default is the model as it was
    check_same_defaults(made, ["alibi"], tmp_path)
    del made["relative"]["encoder_conv_kernel"]  # added since, with another value then (SAVED_BEFORE: 0)
    with pytest.raises(ValueError, match=r"`encoder_conv_kernel` was 0; this code builds 4"):
        check_same_defaults(made, ["relative"], tmp_path)
    with caplog.at_level("WARNING"):
        check_same_defaults(None, ["relative"], tmp_path)
    assert "made before the config defaults were recorded" in caplog.text


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"encodings": ["alibi"], "logn": ["alibi", "sinusoidal"]}, r"`logn` has sinusoidal, which `encodings` \(alibi\)"),
        ({"encodings": ["alibi"], "rope_scalings": ["yarn"]}, r"`rope_scalings` rescale the rope row"),
        ({"second_task": None, "second_task_encodings": ["rope"]}, r"`second_task_encodings` / `second_task_lengths`"),
        ({"second_task": None, "second_task_lengths": [64]}, r"for the second task, which is off"),
        ({"steps": 0}, r"`steps`=0: every row trains"),
        ({"lengths": [3, 32]}, r"`lengths` has 3, too short for passkey \(a source needs at least 7 tokens\)"),
        ({"second_task": "kv_recall", "second_task_lengths": [8, 64]}, r"`second_task_lengths` has 8, too short for kv_recall"),
        ({"resume": True}, r"--resume: .* has no results.json, so there is nothing to resume: check --output_dir"),
        ({"learning_rate": -1e-3}, r"`learning_rate` -0.001 is not a learning rate: give a positive number"),
        ({"randomized": ["sinusoidal"], "lengths": [32]}, r"`randomized` rows sample positions below the longest of "
         r"`lengths` \(32\), which is below `train_max_len`=64"),
    ],
)
def test_extrapolation_flags_that_select_no_row_are_refused(kwargs, pattern, tmp_path):
    from hf_longctx.bench.extrapolation import run_benchmark

    args = BenchArguments(output_dir=str(tmp_path), work_dir=str(tmp_path / "runs"), **kwargs)
    with pytest.raises(ValueError, match=pattern):
        run_benchmark(args, command="test")
    assert not (tmp_path / "results.json").exists(), "refused before anything is written"


def test_a_benchmark_folder_with_results_is_not_overwritten_without_resume(tmp_path):
    """Run again into a folder with results, a benchmark used to replace them with its first row."""
    from hf_longctx.bench.extrapolation import run_benchmark
    from hf_longctx.bench.realtext import RealTextArguments, run_realtext

    made = {"rows": [{"name": "alibi"}, {"name": "alibi+logn"}]}
    (tmp_path / "results.json").write_text(json.dumps(made))
    pattern = r"results.json already holds 2 rows \(alibi, alibi\+logn\), which this run would replace: pass --resume"
    with pytest.raises(ValueError, match=pattern):
        run_benchmark(BenchArguments(output_dir=str(tmp_path), work_dir=str(tmp_path / "runs")), command="test")
    with pytest.raises(ValueError, match=pattern):
        run_realtext(RealTextArguments(output_dir=str(tmp_path), work_dir=str(tmp_path / "runs")), command="test")
    assert json.loads((tmp_path / "results.json").read_text()) == made


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rounds", "0"], "`--rounds`=0 times nothing: give at least 1."),
        (["--iters", "0"], "`--iters`=0 times nothing: give at least 1."),
        (["--skip_encoder", "--lengths", "2048"], "--lengths shapes what --skip_encoder skips: drop it, or drop --skip_encoder."),
        (["--skip_generate", "--new_tokens", "8"], "--new_tokens shapes what --skip_generate skips"),
        (["--skip_generate", "--long_generate_length", "4096"], "--long_generate_length shapes what --skip_generate"),
        (["--long_generate_length", "-1"], "`--long_generate_length`=-1: give a source length (e.g. 16384) or 0"),
    ],
)
def test_bench_speed_refuses_a_run_that_times_nothing(argv, message):
    import subprocess

    result = subprocess.run(
        [sys.executable, "scripts/bench_speed.py", *argv, "--encodings", "alibi", "--references", "bart"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0 and message in result.stderr


def test_bench_speed_target_table_has_one_row_per_target_and_shows_a_miss_in_digits_that_miss(monkeypatch):
    """`learned`'s same-encoding reference is BART: its training target is one row, not two; a 4k training ratio of
    0.8996 is a miss of the 0.9 target and must not read "0.90x | NO"."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_speed

    args = bench_speed.Arguments(encodings=["learned", "relative"], references=["bart", "t5"], lengths=[1024])
    step = 2 * (args.padded_length + bench_speed.PADDED_TARGET)
    seconds = {"learned": 1.0, "relative": 1.0 / 0.8996, "sinusoidal": 1.0, "t5": 3.0, "bart": 1.0}
    result = {
        "ratios": {"learned": {"bart": {"train": 1.03}}, "relative": {"bart": {"train": 0.8}, "t5": {"train": 0.9}}},
        "padded": {name: {"train": {"unpadded_s": s * step / 1000, "ratio": 1.0}} for name, s in seconds.items()},
        "encoder": [],
        "memory_slope": {},
    }
    rows = [line for line in bench_speed.targets(result, args) if line.startswith("| ") and "target" not in line]
    names = [row.split(" | ")[0] for row in rows]
    assert len(names) == len(set(names)), rows
    assert "| relative training at 4096 >= 0.9x sinusoidal (no bias) | 0.900x | NO |" not in rows
    assert "| relative training at 4096 >= 0.9x sinusoidal (no bias) | 0.8996x | NO |" in rows
    assert "| relative training at 4096 >= 2x T5 | 2.70x | yes |" in rows

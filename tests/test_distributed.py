"""Beyond one process, and faults (issue 3): torchrun data parallel, SIGKILL + resume, bf16, gradient accumulation.

Every run goes through the real entry points (`scripts/train.py` in a subprocess, or `train()`) on a tiny model
(d_model 32, 2+2 layers) for a few steps. Each comparison is exact in design: same seed, the same examples in the same
order, dropout only where restoring its RNG state is the point; what differs is float rounding. Subprocesses run with
one thread; the whole file takes about a minute on 2 CPU cores.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM, Seq2SeqTrainingArguments, TrainerCallback

from hf_longctx.training.trainer import DataArguments, ModelArguments, train

REPO = Path(__file__).resolve().parent.parent
TRAIN_PY = [sys.executable, "scripts/train.py"]
TIMEOUT_S = 300  # per subprocess; a healthy run takes 10-20 s

# scripts/train.py arguments every subprocess run shares: a tiny model; the copy task, whose targets (16-32 tokens) differ
# in length, so that batches, ranks and accumulation steps hold different numbers of target tokens and a loss averaged
# per batch instead of per token shows; a 5-example evaluation at one length (over 2 ranks x 4-row batches the last
# batch is topped up with repeats, see test 1); a log line per step; no console noise.
TINY = [
    *("--d_model", "32", "--encoder_layers", "2", "--decoder_layers", "2", "--num_heads", "4", "--d_ff", "64"),
    *("--task", "copy", "--train_min_len", "16", "--train_max_len", "32", "--dataset_seed", "7"),
    *("--eval_lengths", "32", "--num_eval", "5", "--per_device_eval_batch_size", "4", "--eval_strategy", "no"),
    *("--logging_steps", "1", "--log_level", "error", "--disable_tqdm", "true", "--seed", "11"),
]  # no --use_cpu: the README's launch lines do not pass it, and scripts/train.py must need none on CPU


# ------------------------------------------------------------------------------------------- helpers


class Launcher:
    """Starts subprocesses in their own session (one SIGKILL to the group ends torchrun and its workers) and kills
    whatever is still running when the test ends."""

    def __init__(self, tmp_path: Path):
        self.tmp_path, self.procs = tmp_path, []

    def start(self, name: str, *argv) -> subprocess.Popen:
        env = dict(
            os.environ,
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            HF_HUB_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            PYTHONUNBUFFERED="1",
        )
        with open(self.tmp_path / f"{name}.log", "w") as log:
            proc = subprocess.Popen(
                [str(a) for a in argv], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        proc.name = name
        self.procs.append(proc)
        return proc

    def log_tail(self, proc, chars: int = 3000) -> str:
        return (self.tmp_path / f"{proc.name}.log").read_text()[-chars:]

    def finish(self, proc: subprocess.Popen, timeout: float = TIMEOUT_S) -> None:
        """Wait for a run that must succeed; kill its process group when it overruns."""
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"{proc.name} ran past {timeout} s:\n{self.log_tail(proc)}")
        assert proc.returncode == 0, f"{proc.name} exited with {proc.returncode}:\n{self.log_tail(proc)}"

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def launcher(tmp_path):
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.cleanup()


@pytest.fixture
def one_thread():
    """In-process runs use one thread, as the subprocesses do (the machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def max_abs_diff(folder_a: Path, folder_b: Path) -> float:
    a, b = load_file(folder_a / "model.safetensors"), load_file(folder_b / "model.safetensors")
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def step_losses(checkpoint: Path) -> list[float]:
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


class LogRecorder(TrainerCallback):
    """Keeps the training logs (loss, grad_norm, learning_rate per logging step)."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.logs.append(dict(logs))


def in_process_args(output_dir: Path, task: str = "copy", **overrides):
    """ModelArguments, DataArguments and Seq2SeqTrainingArguments of a tiny in-process run (the sizes of TINY)."""
    model_args = ModelArguments(d_model=32, encoder_layers=2, decoder_layers=2, num_heads=4, d_ff=64)
    data_args = DataArguments(
        task=task, train_min_len=16, train_max_len=32, eval_lengths=[32], num_train=64, num_eval=2, dataset_seed=7
    )
    values = dict(
        output_dir=str(output_dir),
        seed=11,
        learning_rate=1e-3,
        predict_with_generate=True,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        train_sampling_strategy="sequential",
    )
    values.update(overrides)
    return model_args, data_args, Seq2SeqTrainingArguments(**values)


# ----------------------------------------------------------------------------------- beyond one process

B, STEPS = 4, 4


# The README's launch lines, as written there (on a machine without an accelerator, with no --use_cpu)
LAUNCH_LINES = {
    # `python -m torch.distributed.run` is what the `torchrun` command runs; this way it is the venv's, whatever PATH
    # holds. --standalone: a private rendezvous on a free port (other test runs may share the machine).
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
    "accelerate": [
        *(sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/ddp.yaml"),
        # the README's CPU line: the shipped config's bf16 (for GPUs) would move the weights ~1e-4 from fp32
        *("--mixed_precision", "no", "--main_process_port", "0"),
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("launch", list(LAUNCH_LINES))
def test_two_processes_match_one_process_with_twice_the_batch(tmp_path, launcher, launch):
    """torchrun --nproc_per_node 2 (gloo, CPU), batch B per process == 1 process, batch 2B: step by step, same
    weights and the same logged losses.

    Exact in design: the sequential sampler makes batch i of the 1-process run the union of the i-th batches of the
    two ranks (accelerate hands out B-row batches round robin: rank 0 gets rows [2iB, 2iB+B), rank 1 the next B), and
    the model normalises its loss by the target tokens of all ranks (Trainer's `average_tokens_across_devices` +
    `num_items_in_batch`), so the averaged gradient is the big batch's. Plain SGD without clipping: Adam divides by
    the gradient's own size and clipping caps it, so either would hide a wrong normalisation factor; and Adam turns
    the float noise of gradients that are zero in exact arithmetic (a key bias: softmax is shift-invariant) into
    lr-sized steps (measured: ~1e-5 after 4 AdamW steps at lr 3e-3, ~1e-8 with SGD).
    """
    args = [
        *TINY,
        *("--num_train", 2 * B * STEPS, "--max_steps", STEPS, "--train_sampling_strategy", "sequential"),
        *("--optim", "sgd", "--learning_rate", "0.1", "--weight_decay", "0", "--max_grad_norm", "0"),
        *("--warmup_steps", "0", "--lr_scheduler_type", "constant", "--save_strategy", "steps", "--save_steps", "1"),
    ]
    two, one = tmp_path / "two", tmp_path / "one"
    procs = [
        launcher.start(
            launch, *LAUNCH_LINES[launch], *TRAIN_PY[1:], "--output_dir", two, "--per_device_train_batch_size", B, *args
        ),
        launcher.start("one", *TRAIN_PY, "--output_dir", one, "--per_device_train_batch_size", 2 * B, *args),
    ]
    for proc in procs:
        launcher.finish(proc)

    diffs = [max_abs_diff(one / f"checkpoint-{s}", two / f"checkpoint-{s}") for s in range(1, STEPS + 1)]
    final = max_abs_diff(one, two)
    moved = max_abs_diff(one / "checkpoint-1", one)  # how far steps 2..N moved the weights
    losses_one, losses_two = step_losses(one / f"checkpoint-{STEPS}"), step_losses(two / f"checkpoint-{STEPS}")
    print(
        f"\n2 processes x batch {B} vs 1 process x batch {2 * B}, {STEPS} SGD steps: max |dw| per step "
        f"{[f'{d:.2e}' for d in diffs]}, final {final:.2e} (weights moved {moved:.2e} after step 1); "
        f"losses {losses_one} vs {losses_two}"
    )
    assert max(diffs) <= 1e-6 and final <= 1e-6
    assert moved > 1e-3  # the comparison is not vacuous
    assert len(losses_one) == STEPS and losses_two == pytest.approx(losses_one, rel=1e-6)

    results_one, results_two = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert results_two["train"]["global_step"] == STEPS
    assert results_two["launch"] == {"launcher": launch, "world_size": 2, "total_train_batch_size": 2 * B}
    assert results_one["launch"] == {"launcher": "python", "world_size": 1, "total_train_batch_size": 2 * B}
    card = (two / "README.md").read_text()
    assert ("torchrun --nproc_per_node 2" if launch == "torchrun" else "accelerate launch --num_processes 2") in card
    saved = load_file(two / "model.safetensors")  # the ties survive (FSDP2 and tied embeddings are a known trap)
    assert "model.shared.weight" in saved and "lm_head.weight" not in saved
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(two)
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.shared.weight.data_ptr()
    assert str(REPO) not in card  # no absolute path of this machine
    # The post-training evaluation under torchrun scored each example once (evaluate_length checks 5 predictions for
    # 5 examples, not 2 ranks x 4 rows) and agrees with the 1-process evaluation of the same weights.
    for metric in ("exact_match", "token_accuracy"):
        assert results_two["eval"]["32"][metric] == results_one["eval"]["32"][metric]


@pytest.mark.skipif(torch.accelerator.is_available(), reason="the refusal is for machines without an accelerator")
def test_the_fsdp_config_on_a_machine_without_an_accelerator_is_refused(tmp_path, launcher):
    """With the shipped fsdp.yaml on CPU, Trainer (use_cpu) would wrap the model in plain DDP (accelerate MULTI_CPU),
    not FSDP: the run is refused, naming the configs that do run here."""
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/fsdp.yaml"]
    proc = launcher.start(
        "fsdp", *accelerate, "--mixed_precision", "no", "--main_process_port", "0", *TRAIN_PY[1:],
        "--output_dir", tmp_path / "run", "--max_steps", "1", *TINY,
    )  # fmt: skip
    proc.wait(timeout=TIMEOUT_S)
    assert proc.returncode != 0
    log = launcher.log_tail(proc, 20000)
    assert "accelerate launched FSDP (ACCELERATE_USE_FSDP=true), but this machine has no accelerator" in log
    assert "configs/accelerate/ddp.yaml" in log and not (tmp_path / "run" / "model.safetensors").exists()


def test_accelerate_cpu_with_several_processes_is_refused(tmp_path, launcher):
    """`accelerate launch --cpu --num_processes 2` runs one process (accelerate 1.15): refused, naming what works."""
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2"]
    proc = launcher.start("cpu2", *accelerate, *TRAIN_PY[1:], "--output_dir", tmp_path / "run", "--max_steps", "1", *TINY)
    proc.wait(timeout=TIMEOUT_S)
    log = launcher.log_tail(proc, 20000)
    assert proc.returncode != 0, log
    assert "`accelerate launch --num_processes 2` started one process" in log and "torchrun --nproc_per_node" in log


def test_bf16_autocast_trains_without_nan(tmp_path, one_thread):
    """bf16=True on CPU: Trainer's autocast runs the matmuls in bfloat16 (checked on the LM head's output), the
    master weights stay float32, every logged loss is finite and the loss goes down."""
    output_dtypes = set()

    class WatchLmHead(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            model.get_output_embeddings().register_forward_hook(lambda m, i, out: output_dtypes.add(out.dtype))

    recorder = LogRecorder()
    model_args, data_args, training_args = in_process_args(
        tmp_path, task="passkey", bf16=True, max_steps=16, per_device_train_batch_size=8, learning_rate=3e-3
    )
    train(model_args, data_args, training_args, callbacks=[recorder, WatchLmHead()])

    losses = [log["loss"] for log in recorder.logs]
    print(f"\nbf16 losses: {[round(x, 3) for x in losses]}")
    assert torch.bfloat16 in output_dtypes  # autocast was on
    assert len(losses) == 16 and all(math.isfinite(x) for x in losses + [log["grad_norm"] for log in recorder.logs])
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.3
    weights = load_file(tmp_path / "model.safetensors")
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights.values())


def test_gradient_accumulation_reports_the_big_batch_loss(tmp_path, one_thread):
    """GA=4 x batch B and GA=1 x batch 4B: the same logged loss and gradient norm at the first step, and the same
    weights after that one optimizer step (ARCHITECTURE.md T8: a model that ignored `num_items_in_batch` would report
    the loss 4x too high, or average per micro-batch instead of per token; copy targets differ in length, so the
    micro-batches hold different numbers of target tokens and the two averages differ)."""
    runs = {}
    for name, batch, accumulation in (("ga4", B, 4), ("ga1", 4 * B, 1)):
        recorder = LogRecorder()
        args = in_process_args(
            tmp_path / name,
            max_steps=1,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            optim="sgd",  # as in the torchrun test: the update is the gradient itself, nothing rescales it
            learning_rate=0.1,
            max_grad_norm=0,
        )
        train(*args, callbacks=[recorder])
        runs[name] = recorder.logs[0]
    diff = max_abs_diff(tmp_path / "ga4", tmp_path / "ga1")
    print(
        f"\nfirst logged loss: GA=4 x {B} {runs['ga4']['loss']:.6f}, GA=1 x {4 * B} {runs['ga1']['loss']:.6f}; "
        f"grad norm {runs['ga4']['grad_norm']:.6f} vs {runs['ga1']['grad_norm']:.6f}; max |dw| {diff:.2e}"
    )
    assert runs["ga4"]["loss"] == pytest.approx(runs["ga1"]["loss"], rel=1e-5)
    assert runs["ga4"]["grad_norm"] == pytest.approx(runs["ga1"]["grad_norm"], rel=1e-5)
    assert diff <= 1e-6


# ----------------------------------------------------------------------------------------------- faults

KILL_AFTER, STALL_AT, MAX_STEPS = 3, 5, 8


def checkpoint_complete(checkpoint: Path) -> bool:
    """trainer_state.json is the last file Trainer writes into a checkpoint; parseable means written."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
        return True
    except (FileNotFoundError, json.JSONDecodeError):
        return False


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_then_resume_gives_the_uninterrupted_weights(tmp_path, launcher):
    """A run checkpoints at step 3, trains on to step 5 (lost work) and is SIGKILLed; `--resume_from_checkpoint last`
    continues from checkpoint-3 to step 8 and ends on the weights of an uninterrupted run of the same seed.

    The demo's training set-up (AdamW, warmup + cosine schedule, weight decay, shuffled length-grouped batches) plus
    dropout, so the resume must restore optimizer, scheduler, data order and RNG state, not just the weights."""
    args = [
        *TINY,
        *("--num_train", "64", "--max_steps", MAX_STEPS, "--per_device_train_batch_size", "4"),
        *("--warmup_steps", "2", "--dropout", "0.1", "--attention_dropout", "0.1"),
    ]
    checkpointing = ["--save_strategy", "steps", "--save_steps", KILL_AFTER]
    run, reference = tmp_path / "run", tmp_path / "reference"
    uninterrupted = launcher.start("reference", *TRAIN_PY, "--output_dir", reference, *args)
    victim = launcher.start(
        "victim", sys.executable, "tests/train_and_stall.py", STALL_AT, "--output_dir", run, *checkpointing, *args
    )

    checkpoint = run / f"checkpoint-{KILL_AFTER}"
    deadline = time.monotonic() + TIMEOUT_S
    while not checkpoint_complete(checkpoint):
        assert victim.poll() is None, f"the run ended before its checkpoint:\n{launcher.log_tail(victim)}"
        assert time.monotonic() < deadline, f"no {checkpoint.name} after {TIMEOUT_S} s:\n{launcher.log_tail(victim)}"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL

    assert sorted(p.name for p in run.glob("checkpoint-*")) == [checkpoint.name]
    assert not (run / "model.safetensors").exists()  # the killed run never got to its final save
    assert (checkpoint / "model.safetensors").is_file()  # checkpoint weights are safetensors, not pickles
    assert not list(checkpoint.glob("pytorch_model*.bin"))

    resumed = launcher.start(
        "resumed", *TRAIN_PY, "--output_dir", run, *checkpointing, "--resume_from_checkpoint", "last", *args
    )
    launcher.finish(resumed)
    launcher.finish(uninterrupted)

    assert json.loads((run / "results.json").read_text())["train"]["global_step"] == MAX_STEPS
    diff = max_abs_diff(run, reference)
    moved = max_abs_diff(checkpoint, run)
    print(
        f"\nkilled after checkpoint-{KILL_AFTER} (stalled at step {STALL_AT}), resumed to step {MAX_STEPS}: "
        f"max |dw| vs uninterrupted {diff:.2e} (weights moved {moved:.2e} after the checkpoint)"
    )
    assert moved > 5e-4
    assert diff <= 1e-6


@pytest.mark.parametrize(
    "value, message", [("last", "holds no complete checkpoint"), ("no/such/folder", "is not a folder")]
)
def test_bad_resume_from_checkpoint_fails_before_training(tmp_path, value, message):
    with pytest.raises(ValueError, match=f"`resume_from_checkpoint`.*{message}"):
        train(*in_process_args(tmp_path, max_steps=1, resume_from_checkpoint=value))
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written

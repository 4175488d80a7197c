#!/usr/bin/env python
"""`scripts/train.py` that freezes after one training step, for the kill-and-resume test (`test_distributed.py`).

    python tests/train_and_stall.py STALL_STEP <scripts/train.py arguments>

Trains exactly as `scripts/train.py` does, then hangs at the end of step STALL_STEP until killed: the steps after
the last checkpoint are done but not saved (work a crash loses), and the run never finishes on its own, so the
test's SIGKILL always lands mid-training however slow the machine is.
"""

import importlib.util
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

REPO = Path(__file__).resolve().parent.parent


class StallAtStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        # Trainer saves step k's checkpoint after on_step_end(k): checkpoints before STALL_STEP are complete.
        if state.global_step == self.step:
            print(f"stalling at step {self.step}", flush=True)
            while True:
                time.sleep(1)


def main() -> None:
    stall_step, argv = int(sys.argv[1]), sys.argv[2:]
    spec = importlib.util.spec_from_file_location("train_script", REPO / "scripts" / "train.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)  # sets the script's environment defaults (threads, offline)
    from hf_longctx.training.trainer import train

    train(*script.parse_args(argv), callbacks=[StallAtStep(stall_step)])


if __name__ == "__main__":
    main()

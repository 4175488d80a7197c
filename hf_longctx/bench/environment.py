"""Where a result was made: library versions, threads, machine, and the checkout's commit (with `+dirty`)."""

import os
import platform
from pathlib import Path

import torch


def environment() -> dict:
    """Where a result was made: torch, threads, machine and the checkout's commit."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    """HEAD of the checkout the benchmark runs from, with `+dirty` when tracked files differ (None outside git)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "hf_longctx"], cwd=root).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


__all__ = ["environment"]

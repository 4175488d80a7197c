"""Where and how a result was made: library versions, threads, machine, the checkout's commit (with `+dirty`), and
the check that results kept by `--resume` were made under the protocol now asked for."""

import os
import platform
from collections.abc import Iterable
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


def check_same_protocol(
    asked: dict, made: dict, path: Path, selection: Iterable[str], defaults: dict | None = None
) -> None:
    """Results kept from `path` (made with the arguments `made`; a field they predate had its value in `defaults`)
    must stand for the protocol `asked` for: every field but the `selection` ones (which rows to run, where they
    go) must be equal; otherwise a ValueError names the field and both values."""
    selection, defaults = set(selection), defaults or {}
    for name, value in asked.items():
        was = made.get(name, defaults.get(name))
        if name not in selection and was != value:
            flag = f"--{name} {' '.join(map(str, was)) if isinstance(was, list) else was}"
            raise ValueError(
                f"{path} was made with `{name}`={was!r}, and these arguments ask for {value!r}: its results would "
                f"stand for a protocol they were not made with. Use another --output_dir (and --work_dir), or "
                f"{flag}."
            )


__all__ = ["environment", "check_same_protocol"]

"""Where and how a result was made: library versions, threads, machine, the checkout's commit (with `+dirty`), and
the check that results kept by `--resume` were made under the protocol now asked for."""

import json
import os
import platform
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)


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


def previous_results(path: Path, resume: bool) -> dict | None:
    """The results an earlier run wrote at `path`, to add rows to (`--resume`). Without `--resume` a folder that
    holds results is refused: the first row this run writes would replace them. `--resume` where there are none is
    refused too (a mistyped --output_dir would start from scratch)."""
    if not path.is_file():
        if resume:
            raise ValueError(
                f"--resume: {path.parent} has no {path.name}, so there is nothing to resume: check --output_dir, or "
                "drop --resume to start there."
            )
        return None
    previous = json.loads(path.read_text())
    if not resume:
        names = [row.get("name", "?") for row in previous.get("rows", [])]
        raise ValueError(
            f"{path} already holds {len(names)} rows ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}), which "
            "this run would replace: pass --resume to add to them, give another --output_dir, or delete the file to "
            "start over."
        )
    return previous


def config_defaults() -> dict:
    """What `LongCtxConfig`'s defaults build for each encoding an encoder takes: {"base": the fields of the first
    one, encoding: the fields that differ from it}. Recorded with results, so that `--resume` can tell whether a
    default changed since they were made (`check_same_defaults`)."""
    from ..configuration_longctx import HF_CONFIG_KEYS, LongCtxConfig
    from ..positions import encoding_names

    built = {}
    for name in encoding_names(encoder_allowed=True):
        config = LongCtxConfig(position_embedding_type=name)
        fields = {k: v for k, v in config.to_dict().items() if k not in HF_CONFIG_KEYS and k != "position_embedding_type"}
        built[name] = fields | {"relative_bias (resolved)": config.has_relative_bias(name)}
    base = next(iter(built.values()))
    return {"base": base} | {name: {k: v for k, v in f.items() if base.get(k) != v} for name, f in built.items()}


def check_same_defaults(made: dict | None, encodings: Iterable[str], path: Path) -> None:
    """Results kept from `path` were built from the defaults `made` (`config_defaults()` then; None: made before they
    were recorded, which gets a warning, as nothing can be checked); a default of one of `encodings` (the encodings
    of the rows kept) that changed since gets a ValueError naming the field and both values."""
    if made is None:
        logger.warning(
            f"{path} was made before the config defaults were recorded: whether its rows were built as this code would "
            f"build them (e.g. `relative` has an encoder convolution by default since 44cf45f) cannot be checked."
        )
        return
    from ..configuration_longctx import SAVED_BEFORE

    now = config_defaults()
    for name in encodings:
        if name not in now or name not in made:
            continue
        was, new = {**made["base"], **made[name]}, {**now["base"], **now[name]}
        # a field the record lacks did not exist then: the rows were built as its value in SAVED_BEFORE says (the
        # rule a saved config follows), or, for a field whose default reproduces the old model, as its default
        was = {k: was[k] if k in was else SAVED_BEFORE.get(k, new[k]) for k in was.keys() | new.keys()}
        changed = {k: (was.get(k), new.get(k)) for k in was.keys() | new.keys() if was.get(k) != new.get(k)}
        if changed:
            field, (before, after) = sorted(changed.items())[0]
            raise ValueError(
                f"{path} has {name!r} rows built when `LongCtxConfig`'s default `{field}` was {before!r}; this code "
                f"builds {after!r}" + (f" (and {len(changed) - 1} more fields)" if len(changed) > 1 else "")
                + ": new rows would not be comparable. Use another --output_dir (and --work_dir), or run the commit "
                "the results were made at (`git_commit` in their environment)."
            )


__all__ = ["environment", "check_same_protocol", "previous_results", "config_defaults", "check_same_defaults"]

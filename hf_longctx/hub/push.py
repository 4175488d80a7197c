"""Pushing a trained model folder to the Hugging Face hub, and checking it is complete before anything is sent.

A folder that loads on the hub with `AutoModelForSeq2SeqLM.from_pretrained(repo, trust_remote_code=True)` and
`AutoTokenizer.from_pretrained(repo)` where hf_longctx is not installed needs:
- the weights, `model.safetensors` (or a safetensors index and its shards);
- `config.json` with `model_type: longctx` and an `auto_map` for AutoConfig, AutoModel and AutoModelForSeq2SeqLM,
  and the modeling files it names, with every file they import relatively (`from .positions import ...`);
- the tokenizer (`tokenizer.json` + `tokenizer_config.json`) and `generation_config.json`;
- a model card, README.md with YAML metadata (`hub.model_card.write_model_card`).

`stage_model_folder` copies what is uploaded (the top-level files, without checkpoints, logs and pickles) into a
staging folder, points the card's loading snippet and model-index at the repo id, and checks the copy: the
staging folder is the exact content of the upload. `push_model_folder` stages, then (unless `dry_run`)
`HfApi.create_repo(exist_ok=True)` + `HfApi.upload_folder` of the staging folder.
"""

import ast
import fnmatch
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from transformers.dynamic_module_utils import get_relative_imports
from transformers.utils import logging

from .model_card import MODEL_CARD, check_model_card

logger = logging.get_logger(__name__)

MODEL_TYPE = "longctx"
REQUIRED_AUTO_CLASSES = ("AutoConfig", "AutoModel", "AutoModelForSeq2SeqLM")
WEIGHTS, WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"
REQUIRED_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
GENERATION_CONFIG = "generation_config.json"
# Not uploaded: Trainer checkpoints and logs, pickles (training_args.bin, optimizer/scheduler/RNG states: the hub
# flags pickles, and the card records the training arguments), caches and hidden files. Only top-level files go up:
# a model folder is flat (remote code resolves sibling files only).
# Logs are not uploaded either (they hold paths and whatever a run printed), nor the training arguments (a local
# record: output and logging folders of this machine).
IGNORED_PATTERNS = (
    "*.bin", "*.pt", "*.pth", "*.pkl", "*.pyc", ".*", "*.log", "*.out", "*.err", "nohup.*", "training_args.json",
)  # fmt: skip
# A hub user access token ("hf_" and 30+ letters and digits), as `huggingface_hub` writes and reads them.
HUB_TOKEN = re.compile(rb"\bhf_[A-Za-z0-9]{30,}\b")
DEFAULT_COMMIT_MESSAGE = "Upload hf_longctx model"


class IncompleteModelFolderError(ValueError):
    """The folder lacks something a hub model folder needs; the message lists every problem and its fix."""


@dataclass
class PushResult:
    staging_dir: Path
    files: list[str] = field(default_factory=list)
    url: str | None = None  # the commit's URL after an upload; None for a dry run


def check_model_folder(folder: str | os.PathLike) -> None:
    """Raise `IncompleteModelFolderError` naming every missing or broken file of a model folder to upload."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IncompleteModelFolderError(f"{folder} is not a folder: pass the `output_dir` of a training run.")
    problems = _weight_problems(folder) + _config_problems(folder) + _tokenizer_problems(folder)
    if not (folder / GENERATION_CONFIG).is_file():
        problems.append(f"missing {GENERATION_CONFIG} (generate's defaults: decoder start, EOS, max length)")
    else:
        problems += _json_problems(folder / GENERATION_CONFIG)
    try:
        check_model_card(folder / MODEL_CARD)
    except ValueError as error:
        problems.append(f"model card: {error} (`hf_longctx.hub.model_card.write_model_card(folder, results)`)")
    if problems:
        raise IncompleteModelFolderError(
            f"{folder} is not a complete hf_longctx model folder:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nA folder written by `hf-longctx-train` / `scripts/train.py` (or `train()`) has all of them."
        )


def files_to_upload(folder: str | os.PathLike) -> list[str]:
    """Names of the top-level files of `folder` that are uploaded (sorted), without `IGNORED_PATTERNS`.

    A symbolic link whose target lies outside `folder` is skipped with a warning (its target is not the folder's to
    publish); a file holding a hub token is refused with a ValueError naming it."""
    folder = Path(folder)
    names = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or any(fnmatch.fnmatch(path.name, pattern) for pattern in IGNORED_PATTERNS):
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(folder.resolve()):
            logger.warning(f"Not uploading {path.name}: it links to {path.resolve()}, outside {folder}.")
            continue
        if HUB_TOKEN.search(_text_of(path)):
            raise ValueError(
                f"{path} holds a hub access token (hf_...); remove the token from it (or the file from the folder) "
                "before uploading: anyone who reads the repository could use it."
            )
        names.append(path.name)
    return names


def _text_of(path: Path) -> bytes:
    """What of a file can hold text: all of it, except a safetensors file's tensors (it can be GBs): its JSON header
    (an 8-byte little-endian length, then the header with the metadata)."""
    if not path.name.endswith(".safetensors"):
        return path.read_bytes()
    with path.open("rb") as file:
        header_length = int.from_bytes(file.read(8), "little")
        return file.read(header_length)


def stage_model_folder(folder: str | os.PathLike, staging_dir: str | os.PathLike, repo_id: str | None = None):
    """Check `folder`, copy its uploadable files into `staging_dir` (new or empty), point the model card at
    `repo_id`, and check the copy. Returns the staged file names."""
    check_model_folder(folder)
    staging_dir = Path(staging_dir)
    if staging_dir.exists() and any(staging_dir.iterdir()):
        raise ValueError(f"The staging folder {staging_dir} is not empty; name a new or empty folder.")
    staging_dir.mkdir(parents=True, exist_ok=True)
    names = files_to_upload(folder)
    for name in names:
        shutil.copy2(Path(folder) / name, staging_dir / name)
    if repo_id is not None:
        retarget_model_card(staging_dir / MODEL_CARD, repo_id)
    check_model_folder(staging_dir)
    return names


def retarget_model_card(path: Path, repo_id: str) -> None:
    """Point a card written for a local folder at its hub repo: the model-index name and the quoted folder name in
    the loading snippet (`from_pretrained("runs/demo", ...)`) become `repo_id`."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(path)
    old = card.data.model_name
    if old and old != repo_id:
        card.text = card.text.replace(f'"{old}"', f'"{repo_id}"')
    card.data.model_name = repo_id
    card.save(path)


def push_model_folder(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    dry_run: bool = False,
    staging_dir: str | os.PathLike | None = None,
    token: str | None = None,
) -> PushResult:
    """Stage `folder` for `repo_id` and upload it (`dry_run`: stage and check only; no network).

    The staging folder is kept after a dry run (a fresh temporary folder unless `staging_dir` is given) and removed
    after an upload into a temporary one.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.utils import validate_repo_id

    validate_repo_id(repo_id)  # a malformed id fails here, before anything is copied or sent
    if not dry_run and constants.HF_HUB_OFFLINE:
        raise RuntimeError(
            "HF_HUB_OFFLINE is set: the upload needs the hub. Unset it (HF_HUB_OFFLINE=0), or pass `--dry_run` to "
            "build and check the upload folder without network."
        )
    temporary = staging_dir is None
    staging = Path(staging_dir) if staging_dir is not None else Path(tempfile.mkdtemp(prefix="hf_longctx_push_"))
    keep = False
    try:
        files = stage_model_folder(folder, staging, repo_id)
        result = PushResult(staging_dir=staging, files=files)
        if dry_run:
            logger.info(f"Dry run: {len(files)} files staged for {repo_id} in {staging}; nothing uploaded.")
            keep = True
            return result
        api = HfApi(token=token)
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        logger.info(f"Uploading {len(files)} files to {repo_url}")
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=staging, commit_message=commit_message, repo_type="model"
        )
        result.url = str(getattr(commit, "commit_url", commit))
        return result
    finally:
        if temporary and not keep:  # after an upload, or a failure
            shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ checks


def _weight_problems(folder: Path) -> list[str]:
    from safetensors import safe_open

    if (folder / WEIGHTS).is_file():
        shards = [WEIGHTS]
    elif (folder / WEIGHTS_INDEX).is_file():
        try:
            weight_map = json.loads((folder / WEIGHTS_INDEX).read_text())["weight_map"]
        except (ValueError, KeyError) as error:
            return [f"{WEIGHTS_INDEX} is not a safetensors index ({error})"]
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            return [f"missing weight shards named by {WEIGHTS_INDEX}: {', '.join(missing)}"]
    else:
        found = [p.name for p in folder.glob("*.bin")]
        hint = f" ({', '.join(found)} found: pickles are not uploaded; save with safetensors)" if found else ""
        return [f"missing {WEIGHTS} (the weights){hint}"]
    problems = []
    for shard in shards:
        try:
            with safe_open(folder / shard, "pt") as f:
                if not list(f.keys()):
                    problems.append(f"{shard} holds no tensors")
        except Exception as error:  # a truncated file, a Git LFS pointer, ...
            problems.append(f"{shard} is not a readable safetensors file ({error})")
    return problems


def _config_problems(folder: Path) -> list[str]:
    path = folder / "config.json"
    if not path.is_file():
        return ["missing config.json"]
    try:
        config = json.loads(path.read_text())
    except ValueError as error:
        return [f"config.json is not JSON ({error})"]
    problems = []
    if config.get("model_type") != MODEL_TYPE:
        problems.append(f"config.json has model_type {config.get('model_type')!r}, not {MODEL_TYPE!r}")
    auto_map = config.get("auto_map") or {}
    missing_classes = [name for name in REQUIRED_AUTO_CLASSES if name not in auto_map]
    if missing_classes:
        problems.append(
            f"config.json `auto_map` lacks {', '.join(missing_classes)}: without it the hub cannot load the model "
            "with trust_remote_code. Save the model with hf_longctx imported (`LongCtxForConditionalGeneration."
            "save_pretrained` writes all three entries and copies the modeling files)."
        )
    for auto_class, reference in auto_map.items():
        if auto_class in REQUIRED_AUTO_CLASSES:
            problems += _code_problems(folder, auto_class, reference)
    return problems


def _code_problems(folder: Path, auto_class: str, reference: str) -> list[str]:
    """The module file `auto_map[auto_class]` names defines the class, and every file it imports relatively exists."""
    if not isinstance(reference, str) or "." not in reference:
        return [f"config.json `auto_map[{auto_class!r}]` is {reference!r}, not `module.ClassName`"]
    if "--" in reference:  # "other/repo--module.Class": the code lives in another hub repo
        return []
    module, class_name = reference.rsplit(".", 1)
    path = folder / f"{module}.py"
    if not path.is_file():
        return [f"missing {path.name} (the code of `auto_map[{auto_class!r}]` = {reference!r})"]
    try:
        tree = ast.parse(path.read_text())
    except SyntaxError as error:
        return [f"{path.name} does not parse ({error})"]
    problems = []
    if not any(isinstance(node, ast.ClassDef) and node.name == class_name for node in tree.body):
        problems.append(f"{path.name} defines no class {class_name} (named by `auto_map[{auto_class!r}]`)")
    seen, todo = {path.name}, [path]
    while todo:  # the closure of relative imports, as transformers' remote-code loader resolves them
        current = todo.pop()
        for name in get_relative_imports(str(current)):
            imported = folder / f"{name}.py"
            if not imported.is_file():
                problems.append(f"missing {imported.name} (imported by {current.name})")
            elif imported.name not in seen:
                seen.add(imported.name)
                todo.append(imported)
    return problems


def _tokenizer_problems(folder: Path) -> list[str]:
    missing = [name for name in REQUIRED_TOKENIZER_FILES if not (folder / name).is_file()]
    if missing:
        return [
            f"missing {', '.join(missing)} (the tokenizer; `tokenizer.save_pretrained(folder)`, which the Trainer "
            "does when given `processing_class`)"
        ]
    return [p for name in REQUIRED_TOKENIZER_FILES for p in _json_problems(folder / name)]


def _json_problems(path: Path) -> list[str]:
    try:
        json.loads(path.read_text())
    except ValueError as error:
        return [f"{path.name} is not JSON ({error})"]
    return []


__all__ = [
    "IncompleteModelFolderError",
    "PushResult",
    "check_model_folder",
    "files_to_upload",
    "stage_model_folder",
    "push_model_folder",
    "retarget_model_card",
]

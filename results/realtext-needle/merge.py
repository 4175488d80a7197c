"""Merge benchmark B runs made in parallel (one process per core, the same protocol but `encodings` / `references`)
into one results folder: `python results/realtext-needle/merge.py OUT RUN_DIR...` from the repository root."""

import json
import sys
from pathlib import Path

from hf_longctx.bench.environment import check_same_protocol
from hf_longctx.bench.realtext import REFERENCES, SELECTION_FIELDS, write_outputs

out, runs = Path(sys.argv[1]), [json.loads((Path(d) / "results.json").read_text()) for d in sys.argv[2:]]
merged = {**runs[0], "commands": [], "environments": [], "rows": []}
for run in runs:
    check_same_protocol(run["protocol"], runs[0]["protocol"], Path("results.json"), SELECTION_FIELDS)
    merged["commands"] += run.get("commands", [run["command"]])
    merged["environments"].append(run["environment"])
    merged["rows"] += run["rows"]
for name in ("encodings", "references"):
    merged["protocol"][name] = [x for run in runs for x in run["protocol"][name]]
merged["protocol"]["yarn"] = any(run["protocol"]["yarn"] for run in runs)
merged["rows"].sort(key=lambda row: row["model"] in REFERENCES)  # hf_longctx rows first, each run's order kept
out.mkdir(parents=True, exist_ok=True)
write_outputs(merged, out)

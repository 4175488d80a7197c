"""The extrapolation benchmark's outputs from its results (`bench.extrapolation.run_benchmark`'s dict): the markdown
table (`markdown`) and the PNG plots (`plot`). Pure functions of the results, so a table can be rebuilt from a
committed `results.json` without training anything."""

import math
from pathlib import Path

from ..data.tasks import DEPTH_BINS, depth_bin_labels


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def best_row(rows: list[dict], train_max: int) -> dict:
    """The passkey row with the highest mean exact match past the training length (ties: the first)."""
    candidates = [r for r in rows if r["task"] == "passkey"] or rows

    def score(row):
        long = [v["exact_match"] or 0.0 for k, v in row["eval"].items() if int(k) > train_max]
        return sum(long) / len(long) if long else 0.0

    return max(candidates, key=score)


def markdown(results: dict) -> str:
    p = results["protocol"]
    rows = results["rows"]
    lengths = sorted({int(k) for r in rows for k in r["eval"]})
    lines = [
        f"# Length extrapolation: passkey retrieval, trained at {p['train_min_len']}-{p['train_max_len']} tokens",
        "",
        "Command: " + "; then ".join(f"`{c}`" for c in results.get("commands", [results["command"]])),
        "",
        f"Protocol: d_model {p['d_model']}, {p['layers']}+{p['layers']} layers, 4 heads, batch {p['batch_size']}, "
        f"AdamW lr {p['learning_rate']} cosine, {p['steps']} steps"
        + (f" or until in-distribution exact match >= {p['target_accuracy']}" if p.get("stop_at_target") else "")
        + f"; '>=target at' = first check (every {p['eval_every']} steps, {p['num_eval']} examples) with "
        f"in-distribution exact match >= {p['target_accuracy']}; greedy exact "
        f"match on {p['num_eval']} examples per length (x = multiple of the longest training length). "
        f"rope+linear/yarn: factor = length/{p['train_max_len']} past {p['train_max_len']}; rope+dynamic: NTK base "
        f"growth (factor {_dynamic_factor(rows)}); all on the trained rope weights. +logn: the same trained model with the "
        f"cross-attention queries scaled by max(1, log n / log {p['train_max_len']}) at inference "
        f"(`cross_attention_logn_length`). +randomized: positions sampled below "
        f"{max(p['lengths'])} in training. Environment: {results['environment']}. Wall time "
        f"{results.get('wall_seconds', 0) / 60:.1f} min.",
        "",
        *[f"- {note}" for note in results.get("notes", [])],
        *([""] if results.get("notes") else []),
        "| variant | task | steps | >=target at | in-dist EM | "
        + " | ".join(f"{n} ({n / p['train_max_len']:g}x)" for n in lengths)
        + " |",
        "|---|---|---:|---:|---:|" + "---:|" * len(lengths),
    ]
    for r in rows:
        t = r["training"]
        cells = [_fmt(r["eval"].get(str(n), {}).get("exact_match")) for n in lengths]
        lines.append(
            f"| {r['name']} | {r['task']} | {t['steps']} | {t['solved_at'] or 'not reached'} | "
            f"{_fmt(t['in_distribution_exact_match'])} | " + " | ".join(cells) + " |"
        )
    lines += seed_summary(rows, lengths, p["train_max_len"])
    best = best_row(rows, p["train_max_len"]) if rows else None
    if best is not None and any("exact_match_by_depth" in v for v in best["eval"].values()):
        bins = depth_bin_labels()
        lines += [
            "",
            f"Exact match by needle depth, best variant ({best['name']}):",
            "",
            "| length | " + " | ".join(bins) + " |",
            "|---:|" + "---:|" * DEPTH_BINS,
        ]
        for n, v in best["eval"].items():
            lines.append(
                f"| {n} | " + " | ".join(_fmt(x) for x in v.get("exact_match_by_depth", [None] * DEPTH_BINS)) + " |"
            )
    return "\n".join(lines) + "\n"


def seed_summary(rows: list[dict], lengths: list[int], train_max: int) -> list[str]:
    """Markdown lines: per variant trained with several seeds, the mean and (worst seed) exact match per length."""
    by_variant: dict[str, list[dict]] = {}
    for row in rows:
        by_variant.setdefault(row.get("variant", row["name"]), []).append(row)
    repeated = {name: group for name, group in by_variant.items() if len(group) > 1}
    if not repeated:
        return []
    lines = [
        "",
        "Across seeds: mean (worst seed) exact match.",
        "",
        "| variant | seeds | reached target | " + " | ".join(f"{n} ({n / train_max:g}x)" for n in lengths) + " |",
        "|---|---|---:|" + "---:|" * len(lengths),
    ]
    for name, group in repeated.items():
        cells = []
        for n in lengths:
            scores = [r["eval"].get(str(n), {}).get("exact_match") for r in group]
            scores = [x for x in scores if x is not None]
            cells.append(f"{sum(scores) / len(scores):.2f} ({min(scores):.2f})" if scores else "-")
        seeds = ", ".join(str(r.get("seed")) for r in group)
        reached = sum(r["training"]["solved_at"] is not None for r in group)
        lines.append(f"| {name} | {seeds} | {reached}/{len(group)} | " + " | ".join(cells) + " |")
    return lines


SCALING_MARKERS = {None: "o", "linear": "s", "dynamic": "^", "yarn": "D"}  # rope's inference-time scalings


def plot(results: dict, output_dir: Path) -> None:
    """accuracy_vs_length.png (passkey; one per extra task) and depth_heatmap.png for the best passkey variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, train_max = results["rows"], results["protocol"]["train_max_len"]
    for task in dict.fromkeys(r["task"] for r in rows):
        fig, ax = plt.subplots(figsize=(8.0, 4.0), dpi=100)
        task_rows = [r for r in rows if r["task"] == task]
        # a colour per trained model (encoding, randomized or not); its inference options by line style and marker
        models = list(dict.fromkeys((r["encoding"], r["randomized"]) for r in task_rows))
        for r in task_rows:
            points = [(int(k), v["exact_match"]) for k, v in r["eval"].items() if v["exact_match"] is not None]
            style = "-." if r.get("logn") else ("--" if r["scaling"] else (":" if r["randomized"] else "-"))
            ax.plot(
                *zip(*points, strict=True), style, color=plt.cm.tab10(models.index((r["encoding"], r["randomized"])) % 10),
                marker=SCALING_MARKERS.get(r["scaling"], "o"), markersize=4, label=r["name"],
            )  # fmt: skip
        ax.axvline(train_max, color="grey", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("source length (tokens); grey line: longest training length")
        ax.set_ylabel("exact match (greedy)")
        ax.set_title(f"{task}: trained at {results['protocol']['train_min_len']}-{train_max} tokens")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the data, never over it
        fig.tight_layout()
        fig.savefig(output_dir / ("accuracy_vs_length.png" if task == "passkey" else f"accuracy_vs_length_{task}.png"))
        plt.close(fig)

    best = best_row(rows, train_max)
    depth = [(k, v["exact_match_by_depth"]) for k, v in best["eval"].items() if v.get("exact_match_by_depth")]
    if depth:
        depth_heatmap(depth, f"exact match by depth: {best['name']} ({best['task']})", output_dir / "depth_heatmap.png")


def depth_heatmap(depth: list[tuple[str, list[float | None]]], title: str, path: Path) -> None:
    """A DEPTH_BINS x length heatmap of exact match: `depth` is (length label, exact match per depth bin) per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = [[math.nan if x is None else x for x in bins] for _, bins in depth]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    image = ax.imshow(
        list(map(list, zip(*grid, strict=True))), vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="lower"
    )
    ax.set_xticks(range(len(depth)), [k for k, _ in depth])
    ax.set_yticks(range(DEPTH_BINS), depth_bin_labels())
    ax.set_xlabel("source length (tokens)")
    ax.set_ylabel("needle depth")
    ax.set_title(title)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _dynamic_factor(rows: list[dict]) -> float | None:
    """The factor the rope+dynamic rows were evaluated with, as their `rope_parameters` record it."""
    for row in rows:
        for scores in row["eval"].values():
            if scores.get("rope_parameters", {}).get("rope_type") == "dynamic":
                return scores["rope_parameters"]["factor"]
    return None


__all__ = ["markdown", "plot", "depth_heatmap", "best_row", "seed_summary"]

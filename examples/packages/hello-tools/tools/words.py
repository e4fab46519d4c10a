"""count_words: words of a text, counted without any library beyond Python's own."""

from __future__ import annotations

import re
from collections import Counter

# Letters, with inner apostrophes or hyphens: "don't", "well-known".
WORD = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")


def count_words(args: dict) -> dict:
    """{"text": ..., "top": n} -> the number of words and the n most frequent ones."""
    words = [word.lower() for word in WORD.findall(args["text"])]
    top = args.get("top", 5)
    return {
        "words": len(words),
        "distinct": len(set(words)),
        "most_frequent": [
            {"word": word, "count": count} for word, count in Counter(words).most_common(top)
        ],
    }

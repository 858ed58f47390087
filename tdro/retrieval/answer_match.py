"""DPR's answer match, as MKQA's evaluation in the reference code uses it: tokenise, match, accuracy@k.

Contract (DPR `SimpleTokenizer` and `has_answer(match_type="string")`, reproduced exactly):
- a text is NFD-normalised, then split into tokens: runs of letters, digits and combining marks
  (`[\\p{L}\\p{N}\\p{M}]+`), or else any single character that is neither a separator nor a control
  (`[^\\p{Z}\\p{C}]`); tokens are lowercased. NFD makes composed and decomposed accents equal; it does
  not strip them ("café" is not "cafe").
- a passage has an answer when the token sequence of any answer occurs contiguously in its tokens.
  An answer with no token never matches (DPR would match it everywhere; loaders refuse such answers).
- `accuracy_at(hits, ks)`: the share of queries with at least one hit among their first k passages.
Pure functions of their arguments; only `regex` (for the Unicode classes) is imported.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import regex

_TOKEN = regex.compile(r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])", flags=regex.IGNORECASE | regex.UNICODE
                       | regex.MULTILINE)


def tokenize(text: str) -> list[str]:
    """DPR's simple tokens of `text`, uncased, after NFD normalisation."""
    return [m.group().lower() for m in _TOKEN.finditer(unicodedata.normalize("NFD", text))]


def contains(tokens: Sequence[str], answer: Sequence[str]) -> bool:
    """Whether `answer`'s tokens occur contiguously in `tokens` (an empty answer never does)."""
    n = len(answer)
    if n == 0:
        return False
    first = answer[0]
    answer = list(answer)
    return any(tokens[i] == first and list(tokens[i : i + n]) == answer for i in range(len(tokens) - n + 1))


def has_answer(passage_tokens: Sequence[str], answers: Sequence[Sequence[str]]) -> bool:
    """Whether any tokenised answer occurs in the tokenised passage."""
    return any(contains(passage_tokens, answer) for answer in answers)


def accuracy_at(hits: Sequence[Sequence[bool]], ks: Sequence[int]) -> dict[str, float]:
    """`accuracy@k` for each k: the share of queries (rows of `hits`, ranked) with a hit in the top k."""
    if not hits:
        return {f"accuracy@{k}": 0.0 for k in ks}
    return {f"accuracy@{k}": sum(any(row[:k]) for row in hits) / len(hits) for k in ks}


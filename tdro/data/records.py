"""One line of the training format, decoded and validated in one C-level pass (msgspec).

A line is a JSON object with `query` (non-blank string), `positive_passages` (non-empty list) and
optionally `negative_passages` (list, absent means empty); a passage is `{"text": str, "title"?: str,
"docid"?: str}`. Other keys are ignored. `decode_group(raw)` returns a `QueryGroup` or raises
`BadLine(reason)` with a short human reason.

A scored pair (an STS dataset, `DataSource.sts`) is `{"sentence1": str, "sentence2": str, "score":
number}`, both sentences non-blank; `decode_scored_pair(raw)` returns a `ScoredPair` or raises `BadLine`.
`decoder_for(source)` is the decoder a dataset card's rows need. `decode_query_id(raw)` is a line's
`query_id` (any JSON value, not validated), or None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from tdro.enums import DataSource


class BadLine(ValueError):
    """A line that is not a valid query group; the message is the reason, without file and line."""


# gc=False: these records hold only strings and lists of records, so they cannot form cycles, and
# untracked objects make decoding large files markedly faster.
class Passage(msgspec.Struct, frozen=True, gc=False):
    text: str
    title: str | None = None
    docid: str | None = None

    @property
    def full_text(self) -> str:
        """`title + " " + text` when the line has a title, else `text`; not stripped (as the reference)."""
        return self.text if self.title is None else f"{self.title} {self.text}"


class QueryGroup(msgspec.Struct, frozen=True, gc=False):
    query: Annotated[str, msgspec.Meta(pattern=r"\S")]
    positives: Annotated[list[Passage], msgspec.Meta(min_length=1)] = msgspec.field(
        name="positive_passages"
    )
    negatives: list[Passage] = msgspec.field(name="negative_passages", default_factory=list)


class ScoredPair(msgspec.Struct, frozen=True, gc=False):
    sentence1: Annotated[str, msgspec.Meta(pattern=r"\S")]
    sentence2: Annotated[str, msgspec.Meta(pattern=r"\S")]
    score: float


class _QueryId(msgspec.Struct):
    query_id: Any = None


_DECODER = msgspec.json.Decoder(QueryGroup)
_PAIR_DECODER = msgspec.json.Decoder(ScoredPair)
_ID_DECODER = msgspec.json.Decoder(_QueryId)


def _reason(err: msgspec.MsgspecError) -> str:
    text = str(err)
    if isinstance(err, msgspec.DecodeError) and not isinstance(err, msgspec.ValidationError):
        return f"invalid JSON ({text})"
    if text.startswith("Expected `str` matching regex") and text.endswith("`$.query`"):
        return "empty query"
    if text.startswith("Expected `array` of length >= 1") and text.endswith("`$.positive_passages`"):
        return "no positive passages"
    return text.replace("Object missing required field", "missing field")


def decode_group(raw: bytes | memoryview | str) -> QueryGroup:
    try:
        return _DECODER.decode(raw)
    except msgspec.MsgspecError as err:
        raise BadLine(_reason(err)) from None


def decode_query_id(raw: bytes | memoryview | str) -> Any:
    """The `query_id` of a line already known to be valid JSON (mined groups carry one)."""
    return _ID_DECODER.decode(raw).query_id


def decode_scored_pair(raw: bytes | memoryview | str) -> ScoredPair:
    try:
        return _PAIR_DECODER.decode(raw)
    except msgspec.MsgspecError as err:
        text = _reason(err)
        for field in ("sentence1", "sentence2"):
            if text.startswith("Expected `str` matching regex") and text.endswith(f"`$.{field}`"):
                text = f"empty {field}"
        raise BadLine(text) from None


Decoder = Callable[[bytes | memoryview | str], QueryGroup | ScoredPair]


def decoder_for(source: DataSource) -> Decoder:
    """How rows of a dataset with this source are decoded: scored pairs for `sts`, else query groups
    (pairs and BEIR sources are read by `tdro.data.sources` and trained on as mined query groups)."""
    return decode_scored_pair if source is DataSource.sts else decode_group


def encode_group(group: QueryGroup) -> bytes:
    """The line (without newline) that decodes to `group`; absent titles and docids are left out."""
    return msgspec.json.encode(_plain(group))


def _plain(group: QueryGroup) -> dict:
    def passage(p: Passage) -> dict:
        out: dict = {}
        if p.docid is not None:
            out["docid"] = p.docid
        if p.title is not None:
            out["title"] = p.title
        out["text"] = p.text
        return out

    return {
        "query": group.query,
        "positive_passages": [passage(p) for p in group.positives],
        "negative_passages": [passage(p) for p in group.negatives],
    }

"""Tokenisation of training examples into padded tensors, with the EOS rule of last-token pooling.

`TrainCollator(tokenizer, config)(examples, dataset_ids) -> TrainBatch`: queries are cut to
`config.query_max_length`, passages to `config.passage_max_length`, padded to the longest sequence on
`config.padding_side`. Passages are flattened query by query, [positive, negatives...], so row
`q * n + j` is passage `j` of query `q`. A batch of scored pairs (STS examples, `score` set) has one
"passage" per "query": the second sentence; both sentences are cut at the passage length, as the STS
evaluation encodes them (`tdro.retrieval.sts`), and the batch carries the scores in `TrainBatch.scores`;
a batch never mixes the two kinds.

EOS (`config.eos`): `append` makes every sequence end in the tokenizer's EOS: when the tokenizer does not
add one itself (Qwen1.5, Llama-3), the text is cut one token shorter and EOS appended before padding;
`tokenizer` trusts the tokenizer's post-processor but checks it; `none` leaves sequences alone (the
config itself refuses `none` with last-token pooling). Every batch is checked for `append` and
`tokenizer`, and `check_eos` refuses up front a tokenizer that cannot give an EOS. A tokenizer without a
pad token pads with its EOS token (`tdro.modeling.tokenizer.ensure_pad_token`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tdro.data.examples import TrainingExample
from tdro.enums import EosHandling
from tdro.errors import UserError
from tdro.modeling.tokenizer import ensure_pad_token, tokenizer_name
from tdro.spec.retriever import RetrieverConfig

if TYPE_CHECKING:
    import torch


@dataclass
class TrainBatch:
    query: dict[str, torch.Tensor]  # input_ids, attention_mask: [B, Lq]
    passages: dict[str, torch.Tensor]  # input_ids, attention_mask: [B * n, Lp]
    dataset_ids: torch.Tensor  # LongTensor [B]: index of each query's dataset in the stream
    scores: torch.Tensor | None = None  # FloatTensor [B]: the gold scores of a batch of scored pairs
    rows: torch.Tensor | None = None  # LongTensor [B]: each query's row in its dataset (re-mining)

    @property
    def passages_per_query(self) -> int:
        return self.passages["input_ids"].shape[0] // self.dataset_ids.shape[0]

    def to(self, device) -> TrainBatch:
        return TrainBatch(
            query={k: v.to(device) for k, v in self.query.items()},
            passages={k: v.to(device) for k, v in self.passages.items()},
            dataset_ids=self.dataset_ids.to(device),
            scores=None if self.scores is None else self.scores.to(device),
            rows=self.rows,  # bookkeeping: stays on the CPU
        )


def tokenizer_adds_eos(tokenizer) -> bool:
    """Whether the tokenizer's own post-processing ends a sequence in its EOS token."""
    eos = tokenizer.eos_token_id
    ids = tokenizer("a b c")["input_ids"]
    return eos is not None and bool(ids) and ids[-1] == eos


def check_eos(tokenizer, config: RetrieverConfig) -> None:
    """Refuse, with one line, a tokenizer that cannot end every sequence in EOS as `config.eos` asks.

    That last-token pooling has an EOS handling at all is the config's own rule (RetrieverConfig)."""
    if config.eos is EosHandling.none:
        return
    if tokenizer.eos_token_id is None:
        raise UserError(
            f"tokenizer {tokenizer_name(tokenizer)} has no eos_token, so sequences cannot end in EOS as "
            f"`eos: {config.eos.value}` needs; use a tokenizer with an eos_token or mean/cls pooling"
        )
    if config.eos is EosHandling.tokenizer and not tokenizer_adds_eos(tokenizer):
        raise UserError(
            f"tokenizer {tokenizer_name(tokenizer)} does not append EOS (like Qwen1.5 and Llama-3); set "
            "`eos: append` in the model card so the collator appends it"
        )


def last_token_ids(input_ids, attention_mask):
    """The id of each row's last real (non-pad) token, for right and left padding alike."""
    import torch

    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    last = (attention_mask.long() * positions).argmax(dim=1)
    return input_ids.gather(1, last[:, None]).squeeze(1)


def pad_rows(rows: list[list[int]], pad_id: int, side: str) -> dict:
    """Pad token-id rows to the longest, on the right or the left, with the matching attention mask."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        lo = 0 if side == "right" else width - len(row)
        ids[i, lo:lo + len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, lo:lo + len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


class TrainCollator:
    def __init__(self, tokenizer, config: RetrieverConfig) -> None:
        check_eos(tokenizer, config)
        ensure_pad_token(tokenizer)
        self.tokenizer = tokenizer
        self.config = config
        self.eos_id = tokenizer.eos_token_id
        self.append_eos = config.eos is EosHandling.append and not tokenizer_adds_eos(tokenizer)

    def encode(self, texts: list[str], max_length: int) -> dict:
        """Token ids and attention mask of `texts`, padded per the config and ending in EOS if required."""
        tok = self.tokenizer
        side = self.config.padding_side.value
        if self.append_eos:
            if max_length < 2:
                raise UserError(f"max length {max_length} leaves no room for text before the appended EOS")
            ids = tok(texts, truncation=True, max_length=max_length - 1, add_special_tokens=True,
                      return_attention_mask=False, return_token_type_ids=False)["input_ids"]
            out = pad_rows([[*row, self.eos_id] for row in ids], tok.pad_token_id, side)
        else:
            out = tok(texts, truncation=True, max_length=max_length, padding=True, padding_side=side,
                      add_special_tokens=True, return_token_type_ids=False, return_tensors="pt")
        encoded = {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}
        if self.config.eos is not EosHandling.none:
            ends = last_token_ids(encoded["input_ids"], encoded["attention_mask"])
            if not bool((ends == self.eos_id).all()):
                raise UserError(
                    f"tokenizer {tokenizer_name(tok)} left sequences without a final EOS; set `eos: append` "
                    "in the model card"
                )
        return encoded

    def __call__(self, examples: list[TrainingExample], dataset_ids: list[int],
                 rows: list[int] | None = None) -> TrainBatch:
        import torch

        if len(examples) != len(dataset_ids) or not examples:
            raise ValueError(f"{len(examples)} examples but {len(dataset_ids)} dataset ids")
        n = len(examples[0].passages)
        if any(len(ex.passages) != n for ex in examples):
            raise ValueError("every example of a batch needs the same number of passages")
        scored = {ex.score is not None for ex in examples}
        if len(scored) > 1:
            raise ValueError("a batch mixes scored pairs (STS) with query groups")
        scores = [float(ex.score) for ex in examples if ex.score is not None] if True in scored else None
        query_length = self.config.passage_max_length if scores else self.config.query_max_length
        return TrainBatch(
            query=self.encode([ex.query for ex in examples], query_length),
            passages=self.encode([p for ex in examples for p in ex.passages], self.config.passage_max_length),
            dataset_ids=torch.tensor(dataset_ids, dtype=torch.long),
            scores=None if scores is None else torch.tensor(scores, dtype=torch.float32),
            rows=None if rows is None else torch.tensor(rows, dtype=torch.long),
        )

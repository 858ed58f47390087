"""Length-aware chunks of a padded batch: encode rows of similar length together, pay for little padding.

A training batch is padded to its longest row; on real text most of its tokens can be padding (issue 17:
up to 0.8 of the passage tokens of one domain, more in a mixed batch). A *chunk plan* cuts the rows into
chunks of similar length, each trimmed to its own longest row, and puts the representations back in the
batch's order, so the loss is computed on the full batch exactly as without chunks.

- `plan_chunks(attention_mask, *, token_budget, max_rows) -> list[Tensor]`: index tensors into the rows;
  together a permutation of them. With a `token_budget` the rows are sorted by length, longest first (a
  stable sort: ties keep batch order), and cut greedily so that `rows * longest row <= token_budget`
  (padded tokens of one encoder call; a row longer than the budget is a chunk of its own) and every row
  is at least `MIN_FILL` of its chunk's longest (padding under a quarter of a chunk's tokens). `max_rows`
  caps the rows of a chunk too (GradCache's chunk size). Without a budget: consecutive pieces of
  `max_rows` rows (or one piece), today's order.
- `split_to(plan, count)`: the same rows in `count` chunks (processes of one DDP model must agree on the
  number of encoder calls: DDP broadcasts buffers in each).
- `take_rows(features, index)`: those rows, with the columns that are padding in all of them dropped.
- `restore_order(pieces, plan)`: the concatenated chunk outputs in the batch's row order (differentiable).
- `encode_plan(model, features, plan)` / `encode_by_length(model, features, token_budget)`: encode the
  chunks and restore the order, with autograd.

Every row's vector depends only on its own tokens (attention is masked; dropout aside), so the result
equals the unchunked one to float tolerance. Dropout draws its masks per call, so with dropout on a
different plan gives different (equally valid) masks; GradCache replays each chunk's RNG state over the
same plan in both passes, so within one plan the two passes agree.
"""

from __future__ import annotations

import torch

Features = dict[str, torch.Tensor]

# A row joins a chunk only if it is at least this share of the chunk's longest row: padding stays under
# a quarter of each chunk's tokens, also when the whole batch would fit in the budget.
MIN_FILL = 0.75


def row_lengths(attention_mask: torch.Tensor) -> torch.Tensor:
    return attention_mask.long().sum(dim=1)


def plan_chunks(
    attention_mask: torch.Tensor, *, token_budget: int | None, max_rows: int | None = None
) -> list[torch.Tensor]:
    """Row indices of each chunk (see the module docstring); the chunks cover every row once."""
    n = int(attention_mask.shape[0])
    cap = max_rows or max(n, 1)
    if token_budget is None:
        return [torch.arange(s, min(s + cap, n)) for s in range(0, n, cap)]
    lengths = row_lengths(attention_mask).cpu()
    order = torch.sort(lengths, descending=True, stable=True).indices
    chunks: list[torch.Tensor] = []
    start = 0
    sorted_lengths = lengths[order].tolist()
    while start < n:
        longest = max(int(sorted_lengths[start]), 1)  # rows are sorted: the first is the chunk's longest
        end = start + max(1, min(cap, token_budget // longest, n - start))
        shortest = MIN_FILL * longest
        # Rows are sorted, so the first row under the fill floor ends the chunk (bisect would do; n is small).
        rows = next((i for i in range(start + 1, end) if sorted_lengths[i] < shortest), end) - start
        chunks.append(order[start : start + rows])
        start += rows
    return chunks


def split_to(plan: list[torch.Tensor], count: int) -> list[torch.Tensor]:
    """The plan cut into `count` chunks: halve the chunk of most rows (the first of equals) until it is.

    DDP broadcasts buffers on every forward call, so all processes must make the same number of calls."""
    plan = list(plan)
    while len(plan) < count:
        k = max(range(len(plan)), key=lambda i: (len(plan[i]), -i))
        if len(plan[k]) < 2:
            raise ValueError(f"{sum(len(c) for c in plan)} rows cannot make {count} chunks")
        half = (len(plan[k]) + 1) // 2
        plan[k : k + 1] = [plan[k][:half], plan[k][half:]]
    return plan


def trim_padding(features: Features) -> Features:
    """Drop the columns that are padding in every row (either padding side)."""
    keep = features["attention_mask"].bool().any(dim=0)
    if bool(keep.all()):
        return features
    return {k: v[:, keep] if v.dim() == 2 else v for k, v in features.items()}


def take_rows(features: Features, index: torch.Tensor) -> Features:
    """The rows `index` of a batch, padding trimmed to their own longest row."""
    n = int(features["input_ids"].shape[0])
    if index.numel() == n and bool((index.cpu() == torch.arange(n)).all()):
        return trim_padding(features)
    device = features["input_ids"].device
    return trim_padding({k: v.index_select(0, index.to(device)) for k, v in features.items()})


def restore_order(pieces: list[torch.Tensor], plan: list[torch.Tensor]) -> torch.Tensor:
    """The chunk outputs, concatenated, put back in the batch's row order."""
    stacked = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
    order = torch.cat(plan) if len(plan) > 1 else plan[0]
    if bool((order == torch.arange(order.numel())).all()):
        return stacked
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel())
    return stacked.index_select(0, inverse.to(stacked.device))


def encode_plan(model: torch.nn.Module, features: Features, plan: list[torch.Tensor]) -> torch.Tensor:
    """One vector per row, in the batch's order, encoded chunk by chunk (autograd flows through)."""
    return restore_order([model(**take_rows(features, index)) for index in plan], plan)


def encode_by_length(
    model: torch.nn.Module, features: Features, token_budget: int | None, *, max_rows: int | None = None
) -> torch.Tensor:
    """`encode_plan` over `plan_chunks` (one process; `tdro.stages.step` agrees the plan over processes)."""
    plan = plan_chunks(features["attention_mask"], token_budget=token_budget, max_rows=max_rows)
    return encode_plan(model, features, plan)

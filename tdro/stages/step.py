"""One contrastive forward/backward of a micro-batch: whole batch, or GradCache-style in chunks.

`forward_backward(model, query, passages, loss_fn, *, accelerator, chunk_size=None, loss_weight=1.0,
sync=True) -> Tensor` accumulates `loss_weight * d loss / d params` into the model's `.grad` and returns
the (detached) loss as `loss_fn` computed it. `sync=False` keeps DDP from all-reducing (gradient
accumulation: only the last micro-batch of an optimizer step syncs). The b*n passages are encoded in n
pieces of b rows, each cut to its own longest row (columns that are padding in every row are dropped):
the same loss and gradients as one call, with smaller activations (measured ~4% faster on CPU).

Chunked mode (GradCache, Gao et al. 2021) trades compute for memory with the same loss and gradients:
1. encode queries and passages chunk by chunk without a graph, recording each chunk's RNG state;
2. compute the loss on the detached representations and back-propagate to them only;
3. re-encode chunk by chunk with a graph under the recorded RNG state (same dropout masks) and
   back-propagate the cached representation gradients. DDP is kept from syncing on all but the very last
   chunk, so a step still does one gradient all-reduce.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from tdro.modeling.losses import ContrastiveLoss

Features = dict[str, torch.Tensor]


def slice_features(features: Features, start: int, end: int) -> Features:
    return {k: v[start:end] for k, v in features.items()}


def num_rows(features: Features) -> int:
    return int(features["input_ids"].shape[0])


@dataclass
class _RngState:
    cpu: torch.Tensor
    cuda: torch.Tensor | None

    @classmethod
    def capture(cls) -> _RngState:
        cuda = (
            torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        )
        return cls(torch.get_rng_state(), cuda)

    @contextmanager
    def replay(self) -> Iterator[None]:
        devices = [torch.cuda.current_device()] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda)
            yield


def trim_padding(features: Features) -> Features:
    """Drop the columns that are padding in every row (a slice of a batch padded to a longer row)."""
    keep = features["attention_mask"].bool().any(dim=0)
    if bool(keep.all()):
        return features
    return {k: v[:, keep] if v.dim() == 2 else v for k, v in features.items()}


def _chunks(features: Features, size: int) -> list[Features]:
    n = num_rows(features)
    return [trim_padding(slice_features(features, s, min(s + size, n))) for s in range(0, n, size)]


def encode(model: torch.nn.Module, features: Features, rows: int) -> torch.Tensor:
    """Encode in pieces of at most `rows` sequences (padding trimmed per piece), with autograd."""
    pieces = _chunks(features, rows)
    return model(**pieces[0]) if len(pieces) == 1 else torch.cat([model(**piece) for piece in pieces])


def forward_backward(
    model: torch.nn.Module,
    query: Features,
    passages: Features,
    loss_fn: ContrastiveLoss,
    *,
    accelerator,
    chunk_size: int | None = None,
    loss_weight: float = 1.0,
    sync: bool = True,
) -> torch.Tensor:
    if chunk_size is None:
        with nullcontext() if sync else accelerator.no_sync(model):
            rows = num_rows(query)  # passages go in n pieces of b rows: cache-friendlier, same result
            loss = loss_fn(model(**query), encode(model, passages, rows))
            accelerator.backward(loss * loss_weight)
        return loss.detach()

    pieces = _chunks(query, chunk_size) + _chunks(passages, chunk_size)
    states, reps = [], []
    with torch.no_grad():
        for piece in pieces:
            states.append(_RngState.capture())
            reps.append(model(**piece))
    n_query_chunks = len(_chunks(query, chunk_size))
    q = torch.cat(reps[:n_query_chunks]).requires_grad_()
    p = torch.cat(reps[n_query_chunks:]).requires_grad_()
    loss = loss_fn(q, p)
    accelerator.backward(loss * loss_weight)  # reaches only q and p: they are leaves
    assert q.grad is not None and p.grad is not None
    grads = list(torch.cat([q.grad, p.grad]).split([r.shape[0] for r in reps]))
    for k, (piece, state, grad) in enumerate(zip(pieces, states, grads, strict=True)):
        last = k == len(pieces) - 1
        with nullcontext() if sync and last else accelerator.no_sync(model), state.replay():
            model(**piece).backward(gradient=grad)
    return loss.detach()

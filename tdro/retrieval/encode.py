"""Texts -> embeddings with a tdro `Encoder`, in length-sorted batches, optionally across processes.

Contract:
- Tokenisation is the training collator's (`TrainCollator.encode`): the same max lengths, padding side
  and EOS rule as in training (EOS appended for last-token pooling when the tokenizer adds none).
- `encode_texts(...)` returns float32 embeddings [len(texts), dim] in the order of `texts`. Batches are
  formed longest first (by characters): similar lengths pad little, and an out-of-memory shows at once.
  Runs under `torch.inference_mode`, with autocast when a dtype is given on a GPU.
- With an `accelerate.Accelerator` of N processes, process r encodes every N-th batch of the length order
  (`process_share`): each text is encoded in the same batch, beside the same texts and padded alike,
  whatever N is, so 1 and N processes give the same bytes (splitting texts rather than batches changed
  batch shapes and moved scores by ~1e-7, enough to swap near-ties in mining). The parts are gathered
  block by block and the main process returns the full array, the others None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator

    from tdro.modeling.encoder import Encoder


_GATHER_ROWS = 8192  # rows per process per gather: bounds device memory whatever the corpus size


def length_order(texts: Sequence[str]) -> list[int]:
    """Positions of `texts`, longest first; equal lengths keep their order."""
    return sorted(range(len(texts)), key=lambda i: -len(texts[i]))


def process_share(order: Sequence[int], batch_size: int, world: int, rank: int) -> list[int]:
    """The positions process `rank` of `world` encodes: batches `rank`, `rank + world`, ... of `order`."""
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    return [position for batch in batches[rank::world] for position in batch]


def _encode_ordered(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    progress,
) -> torch.Tensor:
    """Embeddings of `texts` (assumed already length-sorted) in their given order, on the CPU."""
    import torch

    from tdro.data.collator import TrainCollator

    collator = TrainCollator(encoder.tokenizer, encoder.config)  # refuses a tokenizer without needed EOS
    parts = []
    use_autocast = autocast_dtype is not None and device.type == "cuda"
    with torch.inference_mode(), torch.autocast(device.type, dtype=autocast_dtype, enabled=use_autocast):
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            batch = collator.encode(list(chunk), max_length)
            batch = {k: v.to(device) for k, v in batch.items()}
            parts.append(encoder(**batch).float().cpu())  # device memory stays one batch deep
            if progress is not None:
                progress.update(len(chunk))
    if not parts:
        return torch.zeros((0, encoder.dim), dtype=torch.float32)
    return torch.cat(parts)


def encode_texts(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 128,
    accelerator: Accelerator | None = None,
    autocast_dtype: torch.dtype | None = None,
    show_progress: bool = True,
    desc: str = "encoding",
) -> np.ndarray | None:
    """Float32 embeddings [len(texts), dim] in the order of `texts`; None on non-main processes."""
    from tqdm.auto import tqdm

    world = accelerator.num_processes if accelerator else 1
    rank = accelerator.process_index if accelerator else 0
    device = accelerator.device if accelerator else next(encoder.parameters()).device
    order = length_order(texts)
    shares = [process_share(order, batch_size, world, r) for r in range(world)]
    mine = shares[rank]
    bar = tqdm(total=len(texts), desc=desc, unit="text", disable=not show_progress or rank != 0, leave=False)
    try:
        local = _encode_ordered(
            encoder, [texts[i] for i in mine], max_length=max_length, batch_size=batch_size, device=device,
            autocast_dtype=autocast_dtype, progress=bar,
        )
    finally:
        bar.close()
    if world == 1:
        out = np.empty((len(texts), encoder.dim), dtype=np.float32)
        out[mine] = local.numpy()
        return out
    return _gather_to_main(local, shares, accelerator, encoder.dim, len(texts))


def _gather_to_main(
    local: torch.Tensor, shares: list[list[int]], accelerator: Accelerator, dim: int, total: int
) -> np.ndarray | None:
    """Every process's rows, placed back in text order on the main process, `_GATHER_ROWS` at a time."""
    import torch

    world, rank = len(shares), accelerator.process_index
    positions = [np.asarray(share, dtype=np.int64) for share in shares]
    rows = max(len(share) for share in shares)  # every process sends this many rows; short parts are padded
    out = np.empty((total, dim), dtype=np.float32) if rank == 0 else None
    for begin in range(0, rows, _GATHER_ROWS):
        size = min(_GATHER_ROWS, rows - begin)
        block = torch.zeros((size, dim), dtype=torch.float32)
        piece = local[begin : begin + size]
        block[: piece.shape[0]] = piece
        gathered = accelerator.gather(block.to(accelerator.device))
        if out is not None:
            parts = gathered.cpu().numpy().reshape(world, size, dim)
            for r in range(world):
                where = positions[r][begin : begin + size]
                out[where] = parts[r, : len(where)]
    return out

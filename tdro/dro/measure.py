"""The group measure g: one number per dataset from the per-sample losses of one GLOBAL micro-batch.

Inputs are the gathered per-sample proxy losses l_i, reference losses r_i (None for measure `loss`) and
dataset ids. Per sample, x_i is
- `loss`:            l_i
- `loss_minus_ref`:  l_i - r_i (GroupDRO's excess loss)
- `loss_over_ref`, ratio `per_sample_l1` (the reference implementation): x_i = l_i / q_i with
  q_i = r_i / sum_j |r_j| over the micro-batch, and q_i < 1e-4 replaced by 1; i.e. l_i * sum(r) / r_i.
  That floor depends on the micro-batch size n: q_i < 1e-4 means r_i < n * 1e-4 * mean(r). The paper's
  global micro-batch is 512, so there a sample whose reference loss is below ~5% of the batch mean is
  divided by 1 (it adds ~l_i, i.e. almost nothing); at n = 16 the same rule only catches r_i < 0.16% of
  the mean and such near-solved samples dominate g with l_i / r_i. `ref_floor_batch=N` applies the
  floor as it acts on N samples (q_i < 1e-4 * N / n); N = n, or None, is the reference as written.
then x_i <- max(x_i, 0) and g_d = sum_{dom(i)=d} x_i / max(1, count_d): a dataset absent from the
micro-batch gets 0, so it gets no gradient from it.
- `loss_over_ref`, ratio `domain_means`: g_d = max(0, mean_d(l) / mean_d(r)), with a mean reference loss
  below 1e-4 replaced by 1 (the same guard), and 0 for an absent dataset.
Computed in float64 (alpha is a handful of numbers; the ratio multiplies by the batch's total loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tdro.enums import Measure, RatioMode

# The reference replaces normalised reference losses below this by 1 (avoids dividing by ~0).
SMALL_REF = 1e-4


@dataclass(frozen=True)
class GroupStats:
    measure: torch.Tensor  # [n] float64, g_d (0 for absent datasets)
    counts: torch.Tensor  # [n] int64, samples of each dataset in the micro-batch
    proxy_mean: torch.Tensor  # [n] float64, mean raw proxy loss (NaN if absent)
    ref_mean: torch.Tensor | None  # [n] float64, mean raw reference loss (NaN if absent); None without ref


def _group_sum(values: torch.Tensor, ids: torch.Tensor, n_groups: int) -> torch.Tensor:
    return torch.zeros(n_groups, dtype=values.dtype, device=values.device).index_add_(0, ids, values)


def _group_mean(values: torch.Tensor, ids: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean per group; NaN where a group has no sample."""
    sums = _group_sum(values, ids, counts.numel())
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("nan")))


def group_measure(
    proxy_losses: torch.Tensor,
    ref_losses: torch.Tensor | None,
    dataset_ids: torch.Tensor,
    n_groups: int,
    measure: Measure,
    ratio: RatioMode = RatioMode.per_sample_l1,
    ref_floor_batch: int | None = None,
) -> GroupStats:
    """g_d for every dataset d in 0..n_groups-1; see the module docstring."""
    proxy = proxy_losses.detach().to(torch.float64).reshape(-1).cpu()
    ids = dataset_ids.detach().reshape(-1).long().cpu()
    if ids.numel() != proxy.numel():
        raise ValueError(f"{proxy.numel()} losses but {ids.numel()} dataset ids")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n_groups):
        raise ValueError(f"dataset ids must lie in 0..{n_groups - 1}")
    ref = None if ref_losses is None else ref_losses.detach().to(torch.float64).reshape(-1).cpu()
    if measure is not Measure.loss and ref is None:
        raise ValueError(f"measure {measure.value} needs reference losses")

    counts = torch.bincount(ids, minlength=n_groups)
    proxy_mean = _group_mean(proxy, ids, counts)
    ref_mean = None if ref is None else _group_mean(ref, ids, counts)

    if measure is Measure.loss_over_ref and ratio is RatioMode.domain_means:
        assert ref_mean is not None
        divisor = torch.where(ref_mean < SMALL_REF, torch.ones_like(ref_mean), ref_mean)
        g = torch.where(counts > 0, (proxy_mean / divisor).clamp(min=0), torch.zeros_like(proxy_mean))
        return GroupStats(g, counts, proxy_mean, ref_mean)

    if measure is Measure.loss:
        x = proxy
    elif measure is Measure.loss_minus_ref:
        assert ref is not None
        x = proxy - ref
    else:
        assert ref is not None
        total = ref.abs().sum()
        q = ref / total if total > 0 else torch.zeros_like(ref)
        floor = SMALL_REF if ref_floor_batch is None else SMALL_REF * ref_floor_batch / max(1, ref.numel())
        x = proxy / torch.where(q < floor, torch.ones_like(q), q)
    g = _group_sum(x.clamp(min=0), ids, n_groups) / counts.clamp(min=1)
    return GroupStats(g, counts, proxy_mean, ref_mean)

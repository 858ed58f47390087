"""The mixture weights alpha of stage 1 and their update (exponentiated gradient ascent on log alpha).

Per micro-batch the stage calls `accumulate(g)` with the group measure of the global micro-batch; on the
last micro-batch of an accumulation window it calls `update()` BEFORE forming that micro-batch's robust
loss (the reference's order). `update()`:
1. g_hat = mean of the accumulated g over the window's micro-batches;
2. clip: g_hat *= min(1, max_grad_norm / (||g_hat||_2 + 1e-6)) (torch's clip_grad_norm_, as the
   reference; skipped when max_grad_norm is None);
3. log alpha += eta * g_hat (torch SGD with maximize=True, constant learning rate);
4. alpha = softmax(log alpha); with `normalize_on_update`, log alpha <- log alpha (logsumexp = 0);
5. mean <- (mean * c + alpha) / (c + 1), c += 1: the mean of post-update alphas, the initial one dropped;
   ema <- (1 - ema) * ema + ema * alpha, starting from the initial weights.
The initial weights are divided by their sum (the reference leaves them as given; with its uniform 1/n
they agree, and softmax makes every later alpha independent of the scale).

Everything (log alpha, alpha, mean, EMA, counters, the pending window and the optimizer's state) is in
`state_dict()`, saved in checkpoints and restored on resume: the reference loses it. Float64 on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class AlphaUpdate:
    """What one update did, for the trajectory and the tracker."""

    grad: torch.Tensor  # g_hat after clipping
    grad_norm: float  # ||g_hat||_2 before clipping
    micro_batches: int


class AlphaState:
    def __init__(
        self,
        initial: Sequence[float],
        *,
        eta: float,
        max_grad_norm: float | None = 1.0,
        normalize_on_update: bool = True,
        ema: float = 0.1,
    ) -> None:
        init = torch.tensor([float(w) for w in initial], dtype=torch.float64)
        if init.numel() == 0 or not bool(torch.isfinite(init).all()) or bool((init <= 0).any()):
            raise ValueError("initial weights must be finite and > 0 (log alpha starts at their log)")
        init = init / init.sum()
        self.eta = float(eta)
        self.max_grad_norm = max_grad_norm
        self.normalize_on_update = normalize_on_update
        self.ema_factor = float(ema)
        self.initial = init
        self.log_alpha = torch.nn.Parameter(init.log())
        self.optimizer = torch.optim.SGD([self.log_alpha], lr=self.eta, maximize=True)
        self.alpha = init.clone()
        self.mean = init.clone()
        self.ema = init.clone()
        self.updates = 0  # c: number of alpha updates so far
        self.pending = 0  # micro-batches accumulated in the current window
        self.grad_sum = torch.zeros_like(init)

    @property
    def n_groups(self) -> int:
        return self.initial.numel()

    def accumulate(self, g: torch.Tensor) -> None:
        """Add one micro-batch's group measure to the current window."""
        g = g.detach().to(torch.float64).reshape(-1).cpu()
        if g.numel() != self.n_groups:
            raise ValueError(f"group measure has {g.numel()} entries, alpha has {self.n_groups}")
        self.grad_sum += g
        self.pending += 1

    def update(self) -> AlphaUpdate:
        """Close the window: one ascent step on log alpha (see the module docstring)."""
        if self.pending == 0:
            raise RuntimeError("alpha update without any accumulated micro-batch")
        self.log_alpha.grad = self.grad_sum / self.pending
        params = [self.log_alpha]
        if self.max_grad_norm is not None:
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm))
        else:
            norm = float(self.log_alpha.grad.norm())
        grad = self.log_alpha.grad.detach().clone()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.alpha = torch.softmax(self.log_alpha, dim=0).detach().clone()
            if self.normalize_on_update:
                self.log_alpha.copy_(self.alpha.log())
        self.mean = (self.mean * self.updates + self.alpha) / (self.updates + 1)
        self.ema = (1 - self.ema_factor) * self.ema + self.ema_factor * self.alpha
        self.updates += 1
        micro = self.pending
        self.pending = 0
        self.grad_sum = torch.zeros_like(self.grad_sum)
        return AlphaUpdate(grad=grad, grad_norm=norm, micro_batches=micro)

    # ---- checkpoints ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "initial": self.initial.clone(),
            "log_alpha": self.log_alpha.detach().clone(),
            "alpha": self.alpha.clone(),
            "mean": self.mean.clone(),
            "ema": self.ema.clone(),
            "updates": self.updates,
            "pending": self.pending,
            "grad_sum": self.grad_sum.clone(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        stored = state["log_alpha"].numel()
        if stored != self.n_groups:
            raise ValueError(f"checkpoint has {stored} datasets, alpha has {self.n_groups}")
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.initial = state["initial"].clone()
        self.alpha = state["alpha"].clone()
        self.mean = state["mean"].clone()
        self.ema = state["ema"].clone()
        self.updates = int(state["updates"])
        self.pending = int(state["pending"])
        self.grad_sum = state["grad_sum"].clone()
        self.optimizer.load_state_dict(state["optimizer"])

    def snapshot(self, names: Sequence[str]) -> dict[str, dict[str, float]]:
        """The four snapshots as {dataset: weight} maps, for weights.json."""
        def as_map(t: torch.Tensor) -> dict[str, float]:
            return {name: float(v) for name, v in zip(names, t.tolist(), strict=True)}

        return {"initial": as_map(self.initial), "curr": as_map(self.alpha), "mean": as_map(self.mean),
                "ema": as_map(self.ema)}


"""Stage 1's pure cores on tensors: the group measure, the alpha state and its update, the proxy's robust
loss, and diagnostics of a weight snapshot. No model, no process group: the stage gathers and calls these.

- `group_measure` (measure.py): per-dataset measure g_d from per-sample proxy / reference losses.
- `AlphaState` (alpha.py): log alpha, its accumulation, clipped ascent, softmax, re-centring, mean, EMA.
- `robust_loss` (robust_loss.py): the alpha-weighted per-sample loss that trains the proxy.
- `diagnostics` (diagnostics.py): entropy, largest share, collapse warning (pure Python).
"""

from tdro.dro.alpha import AlphaState, AlphaUpdate
from tdro.dro.diagnostics import COLLAPSE_SHARE, Diagnostics, diagnostics
from tdro.dro.measure import GroupStats, group_measure
from tdro.dro.robust_loss import robust_loss

__all__ = [
    "COLLAPSE_SHARE",
    "AlphaState",
    "AlphaUpdate",
    "Diagnostics",
    "GroupStats",
    "diagnostics",
    "group_measure",
    "robust_loss",
]

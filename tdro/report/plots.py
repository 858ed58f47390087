"""The report's figures, each a pure function of plain rows -> a PNG file (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def alpha_trajectories(
    panels: Sequence[tuple[str, dict[str, list[tuple[int, float]]]]], path: Path
) -> Path:
    """One panel per stage-1 run (titled by its measure and arms): alpha of each dataset over steps."""
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.6), squeeze=False)
    for ax, (title, series) in zip(axes[0], panels, strict=False):
        for dataset, points in sorted(series.items()):
            steps, values = zip(*sorted(points), strict=True)
            ax.plot(steps, values, label=dataset, linewidth=1.4)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("alpha")
        ax.legend(fontsize=7)
    return _save(fig, path)


def grouped_bars(
    groups: Sequence[str], bars: dict[str, dict[str, float]], path: Path, *, ylabel: str, title: str = ""
) -> Path:
    """Bars per group on the x axis (`groups`), one colour per key of `bars` (key -> group -> value)."""
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(groups) * max(len(bars), 1) * 0.5 + 3), 3.8))
    width = 0.8 / max(len(bars), 1)
    for i, (label, values) in enumerate(bars.items()):
        xs = [g + i * width - 0.4 + width / 2 for g in range(len(groups))]
        ax.bar(xs, [values.get(g, 0.0) for g in groups], width=width, label=label)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)

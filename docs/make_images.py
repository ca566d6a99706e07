"""Regenerate the images the README and docs show: ``python docs/make_images.py``."""

from __future__ import annotations

from pathlib import Path

import rfmap
from rfmap.plot import new_figure, plot_map, save_figure

HERE = Path(__file__).resolve().parent / "images"


def gridding_figure() -> Path:
    """(2, 2, 2) leaves holes; (1, 2, 5) covers its field: side by side at 21x21."""
    fig = new_figure((6.4, 3.0))
    for index, schedule in enumerate(([2, 2, 2], [1, 2, 5])):
        ax = fig.add_subplot(1, 2, index + 1)
        plot_map(rfmap.path_map(schedule, size=21), ax, scale="linear", annotate=False)
    return save_figure(fig, HERE / "gridding.png")


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    print(gridding_figure())

"""Figures and animations: every drawing rfmap makes lives in this subpackage.

matplotlib is imported inside the functions, figures are built with
:class:`matplotlib.figure.Figure` (never global pyplot state), every function takes an
optional ``ax`` and returns what it drew on, and files are written atomically.
One module per kind of figure:

- :mod:`rfmap.plot.maps`: path-count maps, animations and the seed gallery.
- :mod:`rfmap.plot.erf`: effective receptive fields, alone or side by side.
- :mod:`rfmap.plot.compare`: schedules side by side, gridding reports, TCN maps.
"""

from __future__ import annotations

from .compare import comparison_rows, plot_compare, plot_report, plot_tcn
from .erf import ERFScale, erf_colormap, plot_erf, plot_erfs
from .maps import (
    FIBONACCI,
    FIGURE_SUFFIXES,
    GALLERY_SCHEDULES,
    SEED_DPI,
    SEED_FIGSIZE,
    Scale,
    animate_schedule,
    animation_frames,
    default_figsize,
    figure_png,
    gallery,
    new_figure,
    plot_map,
    save_figure,
    save_gif,
)

__all__ = [
    "FIBONACCI",
    "FIGURE_SUFFIXES",
    "GALLERY_SCHEDULES",
    "SEED_DPI",
    "SEED_FIGSIZE",
    "ERFScale",
    "Scale",
    "animate_schedule",
    "animation_frames",
    "comparison_rows",
    "default_figsize",
    "erf_colormap",
    "figure_png",
    "gallery",
    "new_figure",
    "plot_compare",
    "plot_erf",
    "plot_erfs",
    "plot_map",
    "plot_report",
    "plot_tcn",
    "save_figure",
    "save_gif",
]

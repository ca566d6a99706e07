"""rfmap: exact receptive-field maps of convolutional networks.

``import rfmap`` loads numpy only.  The exact engine (:func:`path_map`,
:func:`path_counts`) needs nothing else; plotting imports matplotlib when it draws,
and the model tools import PyTorch when they are first used.

>>> import rfmap
>>> rfmap.path_counts([1, 2], size=7, ndim=1).tolist()
[1, 1, 2, 1, 2, 1, 1]

Every submodule is reachable as an attribute (``rfmap.plot``, ``rfmap.report``...),
imported on first use.  Three of them share their name with their main function and
can be called as it: ``rfmap.erf(model, inputs)``, ``rfmap.design(4)`` (also exported
as :func:`design_schedules`) and ``rfmap.tcn("keras-tcn")``.
"""

import importlib as _importlib
from typing import Any as _Any

from .design import DesignResult
from .design import design as design_schedules
from .errors import (
    InvalidSpecError,
    MapTooLargeError,
    ModelError,
    RFMapError,
    SearchTooLargeError,
    UnreadableImageError,
    UnsupportedLayerError,
)
from .gridding import Comparison, GriddingReport, check, compare, gridding_free
from .paths import PathMap, axis_counts, path_counts, path_map, stack_path_map
from .receptive import ReceptiveField, layers_rf
from .specs import ConvLayer, conv_stack, parse_schedule, receptive_field_size
from .tcn import TCNResult

__version__ = "0.1.0"

# Names served lazily from modules that import matplotlib or torch: name -> module.
_LAZY = {
    "plot_map": "plot",
    "plot_compare": "plot",
    "plot_erf": "plot",
    "ERFResult": "erf",
    "gallery": "plot",
    "animate_schedule": "plot",
    "autograd_path_counts": "gradient",
    "model_rf": "trace",
    "model_rfs": "trace",
    "model_stages": "trace",
    "measure_rf": "measure",
    "ExplorerPage": "html",
    "explorer": "html",
    "explorer_html": "html",
}

#: The public submodules, served on first access (``rfmap.plot`` imports matplotlib
#: only then).  ``rfmap.erf`` is the module; calling it runs :func:`rfmap.erf.erf`.
_SUBMODULES = (
    "attention",
    "builder",
    "cli",
    "design",
    "elements",
    "erf",
    "erf_metrics",
    "errors",
    "frontends",
    "gradient",
    "graph",
    "gridding",
    "html",
    "images",
    "layout_ops",
    "layouts",
    "loading",
    "measure",
    "paths",
    "plot",
    "progress",
    "receptive",
    "report",
    "specs",
    "stages",
    "tcn",
    "trace",
    "windows",
)

__all__ = [
    "Comparison",
    "ConvLayer",
    "DesignResult",
    "ERFResult",
    "ExplorerPage",
    "GriddingReport",
    "InvalidSpecError",
    "MapTooLargeError",
    "ModelError",
    "PathMap",
    "RFMapError",
    "ReceptiveField",
    "SearchTooLargeError",
    "TCNResult",
    "UnreadableImageError",
    "UnsupportedLayerError",
    "__version__",
    "animate_schedule",
    "autograd_path_counts",
    "axis_counts",
    "check",
    "compare",
    "conv_stack",
    "design_schedules",
    "erf",
    "explorer",
    "explorer_html",
    "gallery",
    "gridding_free",
    "layers_rf",
    "measure_rf",
    "model_rf",
    "model_rfs",
    "model_stages",
    "parse_schedule",
    "path_counts",
    "path_map",
    "plot_compare",
    "plot_erf",
    "plot_map",
    "receptive_field_size",
    "stack_path_map",
]


def __getattr__(name: str) -> _Any:
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rfmap' has no attribute {name!r}")
    return getattr(_importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    """``__all__``, the submodules and the module's dunder attributes, nothing else."""
    dunders = {name for name in globals() if name.startswith("__") and name.endswith("__")}
    return sorted(set(__all__) | set(_SUBMODULES) | dunders)

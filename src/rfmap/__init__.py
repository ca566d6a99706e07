"""rfmap: exact receptive-field maps of convolutional networks.

``import rfmap`` loads numpy only.  The exact engine (:func:`path_map`,
:func:`path_counts`) needs nothing else; plotting imports matplotlib when it draws,
and the model tools import PyTorch when they are first used.

>>> import rfmap
>>> rfmap.path_counts([1, 2], size=7, ndim=1).tolist()
[1, 1, 2, 1, 2, 1, 1]

Schedule design and the TCN presets live in their modules, whose names they share:
``from rfmap.design import design`` and ``from rfmap.tcn import tcn``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .design import DesignResult
from .errors import (
    InvalidSpecError,
    MapTooLargeError,
    ModelError,
    RFMapError,
    SearchTooLargeError,
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
    "UnsupportedLayerError",
    "__version__",
    "animate_schedule",
    "autograd_path_counts",
    "axis_counts",
    "check",
    "compare",
    "conv_stack",
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


#: Submodules served as themselves: ``rfmap.erf`` is the module, and calling it runs
#: :func:`rfmap.erf.erf` (so ``rfmap.erf(model, inputs)`` works and nothing is shadowed).
_LAZY_MODULES = {"erf"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rfmap' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

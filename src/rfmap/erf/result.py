"""The result of an ERF measurement: :class:`ERFResult` and the types it is made of.

:class:`TheoreticalRF` is the analytic field of the measured unit, :class:`Gradient` how
a gradient becomes a contribution map, :class:`ERFWarning` what the user should know.
Plain data: nothing here imports torch.
"""

from __future__ import annotations

import base64
import enum
import html
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..erf_metrics import ERFMetrics, log_normalise

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["ERFResult", "ERFWarning", "Gradient", "TheoreticalRF"]


class ERFWarning(UserWarning):
    """Something about an ERF measurement the user should know (dead units, small input)."""


class Gradient(str, enum.Enum):
    """How the input gradient becomes a contribution map.

    ``abs`` (default): ``|grad|`` summed over input channels (Luo et al.);
    ``relu``: the positive part of the gradient (RepLKNet's ``visualize_erf.py``);
    ``signed``: the raw gradient (its metrics use magnitudes).
    """

    ABS = "abs"
    RELU = "relu"
    SIGNED = "signed"


@dataclass(frozen=True)
class TheoreticalRF:
    """The analytic receptive field of the measured unit (from :mod:`rfmap.trace`).

    ``box`` is, per axis, the half-open input range ``(start, stop)`` the unit can see,
    clipped to the input; ``stride`` the effective stride (jump) of the layer;
    ``is_global`` whether some operation sees the whole input; ``exact`` whether the
    analysis derived everything (so a crop can be trusted).

    On a *global* axis (``global_axes``: global pooling, a squeeze-excitation gate...)
    the unit reads the whole input, so ``receptive_field`` is the input size and ``box``
    the whole input; ``local_receptive_field`` and ``local_box`` (clipped to the input)
    are then those of the paths through no global operation (the convolutional field;
    ``None`` on an axis without such a path).  :attr:`compared_rf` and
    :attr:`field_box` pick, per axis, the local field where there is one on a global
    axis: that is what the ERF is compared with and drawn as.  ``centre`` is the input
    position under the unit: the centre of its unclipped field (of the local paths on a
    global axis), clipped to the input.

    >>> rf = TheoreticalRF((224,), (8,), ((0, 224),), True, True, (True,), (67,), ((0, 62),))
    >>> rf.compared_rf, rf.field_box
    ((67,), ((0, 62),))
    """

    receptive_field: tuple[int, ...]
    stride: tuple[Any, ...]
    box: tuple[tuple[int, int], ...]
    is_global: bool
    exact: bool
    global_axes: tuple[bool, ...] | None = None
    local_receptive_field: tuple[int | None, ...] | None = None
    local_box: tuple[tuple[int, int] | None, ...] | None = None
    centre: tuple[int, ...] | None = None

    def _local_rf(self, axis: int) -> int | None:
        if self.global_axes is None or not self.global_axes[axis]:
            return None
        return None if self.local_receptive_field is None else self.local_receptive_field[axis]

    def _local_box(self, axis: int) -> tuple[int, int] | None:
        if self._local_rf(axis) is None or self.local_box is None:
            return None
        return self.local_box[axis]

    @property
    def compared_rf(self) -> tuple[int, ...]:
        """Per axis, the field the ERF is compared with: the local paths' on a global axis."""
        return tuple(
            r if self._local_rf(a) is None else int(cast("int", self._local_rf(a)))
            for a, r in enumerate(self.receptive_field)
        )

    @property
    def field_box(self) -> tuple[tuple[int, int], ...]:
        """Per axis, the (clipped) box drawn and centred on: the local paths' on a global axis."""
        return tuple(
            box if self._local_box(a) is None else cast("tuple[int, int]", self._local_box(a))
            for a, box in enumerate(self.box)
        )

    @property
    def uses_local(self) -> bool:
        """Whether some axis is compared with the local paths' field (a global model)."""
        return any(self._local_rf(a) is not None for a in range(len(self.receptive_field)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "receptive_field": list(self.receptive_field),
            "stride": [_jsonable(s) for s in self.stride],
            "box": [list(b) for b in self.box],
            "is_global": self.is_global,
            "exact": self.exact,
            "global_axes": None if self.global_axes is None else list(self.global_axes),
            "local_receptive_field": None
            if self.local_receptive_field is None
            else list(self.local_receptive_field),
            "local_box": None
            if self.local_box is None
            else [None if b is None else list(b) for b in self.local_box],
            "compared_rf": list(self.compared_rf),
            "field_box": [list(b) for b in self.field_box],
            "centre": None if self.centre is None else list(self.centre),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, (int, float, str)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


@dataclass(frozen=True, eq=False)
class ERFResult:
    """An effective receptive field: the mean contribution map and how it was measured.

    ``map`` is the mean over ``count`` inputs of the per-pixel contribution (float64,
    one entry per input pixel); ``normalised`` is RepLKNet's ``log10(x + 1) / max`` form;
    ``metrics`` the area ratios, Gaussian fit and extents.  ``crop`` is the input box the
    model actually ran on (``None``: the full input), with the reason in ``crop_note``.
    ``skipped`` names the image files that could not be read and were left out
    (``skip_unreadable=True``): ``count`` and the mean are over the inputs read.
    """

    map: np.ndarray
    count: int
    name: str
    layer: str | None
    unit: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_size: tuple[int, ...]
    gradient: Gradient
    output_relu: bool
    inputs: dict[str, Any]
    metrics: ERFMetrics
    theoretical: TheoreticalRF | None = None
    theoretical_note: str = ""
    crop: tuple[tuple[int, int], ...] | None = None
    crop_note: str = ""
    device: str = "cpu"
    world_size: int = 1
    batch_size: int = 1
    channels_last: bool = False
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)
    skipped: tuple[str, ...] = ()

    @cached_property
    def normalised(self) -> np.ndarray:
        """``log10(|map| + 1) / max``: the map RepLKNet plots."""
        return log_normalise(self.map)

    @property
    def images_per_second(self) -> float:
        """Inputs processed per second of wall time (over all processes)."""
        return self.count / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self, include_map: bool = False) -> dict[str, Any]:
        """JSON-ready description and metrics; ``include_map`` adds the raw map as lists."""
        out: dict[str, Any] = {
            "name": self.name,
            "layer": self.layer,
            "unit": list(self.unit),
            "output_shape": list(self.output_shape),
            "input_size": list(self.input_size),
            "count": self.count,
            "gradient": self.gradient.value,
            "output_relu": self.output_relu,
            "inputs": self.inputs,
            "metrics": self.metrics.to_dict(),
            "theoretical": None if self.theoretical is None else self.theoretical.to_dict(),
            "theoretical_note": self.theoretical_note,
            "crop": None if self.crop is None else [list(b) for b in self.crop],
            "crop_note": self.crop_note,
            "device": self.device,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "channels_last": self.channels_last,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 3)
            if math.isfinite(self.images_per_second)
            else None,
            "notes": list(self.notes),
            "skipped": list(self.skipped),
        }
        if include_map:
            out["map"] = self.map.tolist()
        return out

    def plot(self, ax: Axes | None = None, **kwargs: Any) -> Any:
        """Draw the paper-style heatmap (see :func:`rfmap.plot.plot_erf`); return the axes."""
        from ..plot.erf import plot_erf

        kwargs.setdefault("pyplot", ax is None)
        return plot_erf(self, ax=ax, **kwargs)

    def __str__(self) -> str:
        from ..report import format_erf

        return format_erf([self])

    def _repr_png_(self) -> bytes:
        from ..plot import figure_png
        from ..plot.erf import plot_erf

        return figure_png(cast("Figure", plot_erf(self).figure))

    def _repr_html_(self) -> str:
        from ..report import summary_rows

        png = base64.b64encode(self._repr_png_()).decode("ascii")
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
            for k, v in summary_rows(self)
        )
        return (
            f'<div><img src="data:image/png;base64,{png}" style="max-width:420px"/>'
            f"<table>{rows}</table></div>"
        )

    def __repr__(self) -> str:
        ratios = ", ".join(
            f"{a.threshold:g}:{'-' if a.ratio is None else f'{a.ratio:.3f}'}"
            for a in self.metrics.area_ratios
        )
        return (
            f"ERFResult({self.name!r}, layer={self.layer!r}, count={self.count}, "
            f"shape={list(self.map.shape)}, area_ratios={{{ratios}}})"
        )

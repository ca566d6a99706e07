"""Cropping, exactly: the unit's analytic receptive field and the input box it needs.

The unit depends only on the input inside its theoretical receptive field (from
:mod:`rfmap.trace`), so the model can run on a crop that holds the whole field, aligned
to the effective stride: the same gradient for far less work.  :func:`_verify_crop`
checks a crop against the full input.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ModelError, RFMapError
from .inputs import _Source
from .memory import _probe
from .model import _contributions
from .result import Gradient, TheoreticalRF

__all__: list[str] = []


def _theoretical_rf(
    model: Any,
    input_size: tuple[int, ...],
    layer: str | None,
    unit: tuple[int, ...],
    grid: tuple[int, ...],
    clone: Any = None,
) -> tuple[TheoreticalRF | None, str]:
    """The analytic receptive field of ``unit`` (from :func:`rfmap.trace.model_rf`).

    Returns ``(None, reason)`` when it is unknown.  The analysis runs on the meta-device
    ``clone`` first (shapes only: free even at 1024 px); only if that fails or had to
    measure something does it run on the real model.
    """
    try:
        from ..trace import model_rf
    except ImportError:  # pragma: no cover - rfmap.trace ships with rfmap
        return None, "the analytic receptive field (rfmap.trace) is not available"
    info = None
    if clone is not None:
        with contextlib.suppress(Exception):
            info = model_rf(clone, input_size=input_size, layer=layer)
            if not info.exact or info.method != "analytic":
                info = None
    try:
        if info is None:
            info = model_rf(model, input_size=input_size, layer=layer)
        if tuple(info.grid) != tuple(grid):
            return None, (
                f"the analysis found an output grid {list(info.grid)}, the model has {list(grid)}"
            )
        box = tuple((int(a), int(b)) for a, b in info.input_box(unit, clip=True))
        stride = tuple(_integral(j) for j in info.stride)
        global_axes = tuple(bool(g) for g in info.global_axes)
        spatial = tuple(input_size[1:])
        local_rf, local_box, local_unclipped = _local_field(info, unit, stride, spatial)
        # The unit's centre: that of its unclipped field (local paths on a global axis).
        try:
            unclipped = info.input_box(unit, clip=False)
        except RFMapError:  # a measured field knows only the box inside the input
            unclipped = box
        centre = []
        for axis, n in enumerate(spatial):
            local = None if local_unclipped is None else local_unclipped[axis]
            a, b = local if global_axes[axis] and local is not None else unclipped[axis]
            centre.append(min(max((int(a) + int(b) - 1) // 2, 0), n - 1))
        result = TheoreticalRF(
            receptive_field=tuple(int(r) for r in info.receptive_field),
            stride=stride,
            box=box,
            is_global=bool(info.is_global),
            exact=bool(info.exact),
            global_axes=global_axes,
            local_receptive_field=local_rf,
            local_box=local_box,
            centre=tuple(centre),
        )
    except RFMapError as exc:
        return None, f"the analytic receptive field is unknown: {exc}"
    except Exception as exc:  # an analysis bug must not stop a measurement
        return None, f"the analytic receptive field failed: {type(exc).__name__}: {exc}"
    return result, ""


_Boxes = tuple[tuple[int, int] | None, ...]


def _local_field(
    info: Any, unit: tuple[int, ...], stride: tuple[Any, ...], spatial: tuple[int, ...]
) -> tuple[tuple[int | None, ...] | None, _Boxes | None, _Boxes | None]:
    """The field of the paths through no global op; the unit's box of them, clipped and not.

    On a global axis ``receptive_field`` is the whole input; the local paths of unit
    ``u`` read ``[u * stride + local_start, ... + local_receptive_field)``.  ``None``
    on an axis without local paths or with a fractional stride.
    """
    sizes = getattr(info, "local_receptive_field", None)
    starts = getattr(info, "local_start", None)
    if sizes is None or starts is None:
        return None, None, None
    rf: list[int | None] = []
    boxes: list[tuple[int, int] | None] = []
    unclipped: list[tuple[int, int] | None] = []
    for u, size, start, jump, n in zip(unit, sizes, starts, stride, spatial, strict=True):
        if size is None or start is None or not isinstance(jump, int):
            rf.append(None if size is None else int(size))
            boxes.append(None)
            unclipped.append(None)
            continue
        first = u * jump + int(start)
        rf.append(int(size))
        low, high = max(first, 0), min(first + int(size), n)
        boxes.append((low, high) if high > low else None)
        unclipped.append((first, first + int(size)))
    return tuple(rf), tuple(boxes), tuple(unclipped)


def _integral(jump: Any) -> Any:
    """A jump as an int when it is a whole number (a Fraction 2/1 becomes 2)."""
    denominator = getattr(jump, "denominator", None)
    if denominator == 1:
        return int(jump)
    return jump


def _crop_box(
    theory: TheoreticalRF | None, spatial: tuple[int, ...], note: str
) -> tuple[tuple[tuple[int, int], ...] | None, str]:
    """The input box to compute on: the unit's field, its start aligned to the stride.

    The crop starts at a multiple of the effective stride, so every feature map of the
    crop is an exact sub-grid of the full one; it holds the whole (clipped) field, so
    every value the unit depends on is computed from the same inputs; where the field
    reaches the border the crop keeps the border, so padding is the same too.
    """
    if theory is None:
        return None, note or "the analytic receptive field is unknown"
    if theory.is_global:
        return None, "the model has a global operation (e.g. adaptive pooling, squeeze-excitation)"
    if not theory.exact:
        return None, "the receptive-field analysis is not exact for this model"
    box = []
    for axis, n in enumerate(spatial):
        jump = theory.stride[axis]
        if isinstance(jump, bool) or not isinstance(jump, int) or jump < 1:
            return None, f"the effective stride {jump!r} is not a positive integer"
        start, stop = theory.box[axis]
        start, stop = max(0, start), min(n, stop)
        if stop <= start:
            return None, "the unit's receptive field misses the input"
        box.append(((start // jump) * jump, stop))
    if all(b == (0, n) for b, n in zip(box, spatial, strict=True)):
        return None, "the receptive field covers the whole input"
    return tuple(box), ""


def _crop_runs(
    clone: Any,
    fn: Callable[[Any], Any],
    layer: str | None,
    shape: tuple[int, ...],
    dtype: Any,
    unit: tuple[int, ...],
    device: Any,
) -> tuple[tuple[tuple[int, ...], int] | None, bool]:
    """Whether the model runs on a crop of ``shape`` and its output holds ``unit``.

    A unit near the border can have a field of a pixel or two, too small an input for
    the layers before it; such a crop is not used.  Checked on the meta clone (free),
    or with a real forward pass of one zero input when there is no clone.
    """
    from ..gradient import require_torch

    torch = require_torch()
    probe = _probe(clone, layer, shape, dtype) if clone is not None else None
    if probe is not None:
        out = probe[0]
    else:
        try:
            with torch.no_grad():
                result = fn(torch.zeros((1, *shape), dtype=dtype, device=device))
            out = tuple(result.shape)
        except Exception:
            return None, False
    grid = out[2:]
    fits = len(grid) == len(unit) and all(0 <= u < n for u, n in zip(unit, grid, strict=True))
    return probe, fits


def _verify_crop(
    fn: Callable[[Any], Any],
    source: _Source,
    box: tuple[tuple[int, int], ...],
    unit: tuple[int, ...],
    crop_unit: tuple[int, ...],
    mode: Gradient,
    output_relu: bool,
    device: Any,
    dtype: Any,
    layer: str | None,
    torch: Any,
) -> None:
    """Compute the first input on the full image too, and require the same gradient."""
    first = next(source.batches(1, 0, 1, None), None)
    if first is None:  # no input can be read: the measurement will say so
        return
    batch = first[1]
    x = (torch.from_numpy(batch) if isinstance(batch, np.ndarray) else batch)[:1]
    x = x.to(device=device, dtype=dtype)
    full = _contributions(fn, x, unit, mode, output_relu, layer, torch)[0]
    window = (slice(None), slice(None), *tuple(slice(a, b) for a, b in box))
    cropped = _contributions(fn, x[window], crop_unit, mode, output_relu, layer, torch)[0]
    placed = torch.zeros_like(full)
    placed[tuple(slice(a, b) for a, b in box)] = cropped
    scale = float(full.abs().max()) or 1.0
    error = float((placed - full).abs().max()) / scale
    tolerance = 1e-4 if dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-10
    if error > tolerance:
        raise ModelError(
            f"the crop {[list(b) for b in box]} does not reproduce the full-input gradient "
            f"(relative difference {error:.2e}); rerun with crop disabled (--no-crop) and "
            "report this model"
        )

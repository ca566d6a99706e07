"""Effective receptive fields of real models (PyTorch): batched, cropped, distributed.

The effective receptive field (ERF, Luo et al. 2016) of an output unit is the map of
``|d unit / d input|`` per input pixel, averaged over many inputs: what the unit does
see, where the theoretical receptive field says what it could see.  :func:`erf` measures
it for any ``nn.Module`` and any layer of it, as the large-kernel papers do (RepLKNet,
Ding et al. 2022), but:

- **batched**: a batch of inputs costs one forward and one backward pass, since the
  centre unit of image ``n`` depends on image ``n`` only (the model runs in eval mode);
- **cropped, exactly**: the unit depends only on the input inside its theoretical
  receptive field, so when the input is larger (RepLKNet analyses 1024 px inputs) the
  model runs on a crop that holds the whole field, aligned to the effective stride --
  the same gradient for far less work.  Models with global operations (adaptive
  pooling, squeeze-excitation, attention) or an analysis that cannot be trusted run on
  the full input;
- **distributed**: under ``torchrun`` the batches are dealt round-robin to the ranks and
  the maps all-reduced, which gives the single-process result;
- **bounded**: the batch size follows from a memory budget (measured on a copy of the
  model on PyTorch's ``meta`` device), and inputs are read one batch at a time.

The result, :class:`ERFResult`, holds the mean map, the metrics of
:mod:`rfmap.erf_metrics`, and how it was computed; ``to_dict()`` is what
``rfmap erf --json`` prints.  Needs PyTorch; ``import rfmap`` does not load it.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import difflib
import enum
import html
import json
import math
import numbers
import os
import sys
import time
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .erf_metrics import (
    DEFAULT_THRESHOLDS,
    ERFMetrics,
    erf_metrics,
    gaussian_fit,
    log_normalise,
)
from .errors import MapTooLargeError, ModelError, RFMapError
from .images import ImageSet

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ERFResult",
    "ERFWarning",
    "Gradient",
    "TheoreticalRF",
    "comparison_table",
    "erf",
    "load_erf",
    "process_group",
    "resolve_device",
    "save_erf",
    "summary_rows",
]

#: Largest batch the automatic batch size picks.
MAX_AUTO_BATCH = 64
#: Batch size when the memory needed per input cannot be measured.
FALLBACK_BATCH = 4
#: Memory budget for the activations of one batch on the CPU (bytes), unless told otherwise.
CPU_MEMORY_BUDGET = 2 * 2**30
#: Largest input batch tensor allowed (bytes), checked before allocating.
MAX_BATCH_BYTES = 8 * 2**30


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
        }
        if include_map:
            out["map"] = self.map.tolist()
        return out

    def plot(self, ax: Axes | None = None, **kwargs: Any) -> Any:
        """Draw the paper-style heatmap (see :func:`rfmap.plot.plot_erf`); return the axes."""
        from .plot.erf import plot_erf

        return plot_erf(self, ax=ax, **kwargs)

    def _repr_png_(self) -> bytes:
        from .plot import figure_png
        from .plot.erf import plot_erf

        return figure_png(cast("Figure", plot_erf(self).figure))

    def _repr_html_(self) -> str:
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


def summary_rows(result: ERFResult) -> list[tuple[str, str]]:
    """(label, value) pairs describing a result, for text and HTML tables."""
    m = result.metrics
    rows = [
        ("model", result.name),
        ("layer", result.layer or "(model output)"),
        (
            "unit",
            ",".join(map(str, result.unit)) + " of " + "x".join(map(str, result.output_shape)),
        ),
        ("inputs", f"{result.count} ({result.inputs.get('kind', 'inputs')})"),
        ("input size", "x".join(map(str, result.input_size))),
    ]
    for item in m.area_ratios:
        value = "-" if item.ratio is None else f"{item.ratio:.4f} (side {item.side})"
        rows.append((f"area ratio {item.threshold:.0%}", value))
    if m.gaussian is not None:
        rows.append(("gaussian sigma", ", ".join(f"{s:.2f}" for s in m.gaussian.sigma)))
    rows.append(("extent (95.45%)", "x".join(map(str, m.extent))))
    theory = result.theoretical
    if theory is not None:
        text = "x".join(map(str, theory.receptive_field))
        if theory.uses_local:
            text += " (a global op reads the whole input)"
            rows.append(("theoretical RF", text))
            rows.append(("local-path RF", "x".join(map(str, theory.compared_rf))))
        else:
            rows.append(("theoretical RF", text))
    if m.extent_over_rf is not None:
        label = "extent / local RF" if theory is not None and theory.uses_local else "extent / RF"
        rows.append((label, ", ".join(f"{r:.3f}" for r in m.extent_over_rf)))
    crop = "full input" if result.crop is None else " x ".join(f"[{a},{b})" for a, b in result.crop)
    rows.append(("computed on", crop))
    return rows


def comparison_table(results: Sequence[ERFResult]) -> tuple[list[str], list[list[str]]]:
    """The comparison table: (header, rows), one row per result, all strings."""
    results = list(results)
    thresholds = [a.threshold for a in results[0].metrics.area_ratios] if results else []
    header = ["model", "layer", "n"] + [f"area {t:.0%}" for t in thresholds]
    header += ["sigma", "extent", "RF", "extent/RF"]
    rows = []
    for r in results:
        m = r.metrics
        ratios = {round(a.threshold, 6): a.ratio for a in m.area_ratios}
        row = [r.name, r.layer or "output", str(r.count)]
        for t in thresholds:
            value = ratios.get(round(t, 6))
            row.append("-" if value is None else f"{value:.3f}")
        row.append("-" if m.gaussian is None else "x".join(f"{s:.1f}" for s in m.gaussian.sigma))
        row.append("x".join(map(str, m.extent)))
        rf = r.theoretical.compared_rf if r.theoretical is not None else None
        local = r.theoretical is not None and r.theoretical.uses_local
        row.append("-" if rf is None else "x".join(map(str, rf)) + (" local" if local else ""))
        over = m.extent_over_rf
        row.append("-" if over is None else "x".join(f"{v:.2f}" for v in over))
        rows.append(row)
    return header, rows


# ---------------------------------------------------------------------------------------
# devices and processes


def resolve_device(device: str | Any = "auto", local_rank: int | None = None) -> Any:
    """The torch device for ``device``: ``"auto"`` is CUDA when present, else the CPU.

    Under ``torchrun`` each process takes the GPU of its ``LOCAL_RANK``.
    """
    from .gradient import require_torch

    torch = require_torch()
    text = str(device).strip().lower() if not isinstance(device, torch.device) else None
    if text == "auto":
        if torch.cuda.is_available():
            index = local_rank if local_rank is not None else 0
            return torch.device("cuda", index % max(torch.cuda.device_count(), 1))
        return torch.device("cpu")
    try:
        chosen = torch.device(device) if text is None else torch.device(text)
    except (RuntimeError, ValueError):
        raise RFMapError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise RFMapError(f"device {device!r} was asked for but CUDA is not available here")
        if chosen.index is None:
            index = local_rank if local_rank is not None else 0
            chosen = torch.device("cuda", index % torch.cuda.device_count())
        elif chosen.index >= torch.cuda.device_count():
            raise RFMapError(
                f"device {device!r} does not exist: {torch.cuda.device_count()} GPU(s) here"
            )
    return chosen


@dataclass
class _Group:
    """The process group of a distributed run (or a single process)."""

    rank: int = 0
    world: int = 1
    created: bool = False
    backend: str | None = None

    def all_reduce(self, tensor: Any, op: str = "sum") -> Any:
        if self.world == 1:
            return tensor
        import torch.distributed as dist

        ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
        dist.all_reduce(tensor, op=ops[op])
        return tensor

    def sync_model(self, model: Any, device: Any) -> bool:
        """Give every process rank 0's parameters and buffers if they differ; say if so.

        As DDP does at construction: a randomly initialised model (no weights file) is
        drawn differently by each process, and the ranks must measure the same model.
        """
        if self.world == 1:
            return False
        import torch
        import torch.distributed as dist

        tensors = list(model.parameters()) + list(model.buffers())
        with torch.no_grad():
            sums = [t.detach().double().sum() for t in tensors]
            squares = [t.detach().double().square().sum() for t in tensors]
            local = (
                torch.stack([torch.stack(sums).sum(), torch.stack(squares).sum()])
                if tensors
                else torch.zeros(2, dtype=torch.float64, device=device)
            )
            comm = _comm_device(self, device)
            high = self.all_reduce(local.to(comm).clone(), "max")
            low = self.all_reduce(local.to(comm).clone(), "min")
            if torch.equal(high, low):
                return False
            for t in tensors:
                if self.backend == "nccl":
                    dist.broadcast(t.data, src=0)
                else:
                    data = t.data.cpu()
                    dist.broadcast(data, src=0)
                    t.data.copy_(data)
        return True

    def close(self) -> None:
        if self.created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _local_rank() -> int | None:
    value = os.environ.get("LOCAL_RANK")
    return int(value) if value is not None and value.isdigit() else None


def _join_group(distributed: bool | None, device: Any) -> _Group:
    """Join (or create, under torchrun) the default process group."""
    import torch.distributed as dist

    if distributed is False or not dist.is_available():
        return _Group()
    if dist.is_initialized():
        return _Group(dist.get_rank(), dist.get_world_size(), False, str(dist.get_backend()))
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        if distributed:
            raise RFMapError(
                "distributed=True needs a process group or torchrun's environment "
                "(WORLD_SIZE, RANK, MASTER_ADDR); run under torchrun --nproc_per_node=P"
            )
        return _Group()
    backend = "nccl" if device.type == "cuda" else "gloo"
    _load_meta_kernels()
    try:
        dist.init_process_group(backend=backend)
    except Exception as exc:
        raise RFMapError(f"cannot start the {backend} process group: {exc}") from exc
    return _Group(dist.get_rank(), dist.get_world_size(), True, backend)


def _load_meta_kernels() -> None:
    """Run one op on the meta device before a process group exists.

    The first meta op imports torch's Python meta kernels (~900 modules: dynamo,
    functional collectives...); imported while a process group exists, they keep it
    alive past ``destroy_process_group``, and gloo's worker threads then outlive it:
    they sometimes free a tensor during interpreter shutdown and abort the process
    ("terminate called without an active exception", a quarter of 2-process runs here).
    """
    import torch

    with contextlib.suppress(Exception):
        torch.empty(1, device="meta").relu()


@contextlib.contextmanager
def process_group(device: str | Any = "auto") -> Iterator[tuple[int, int]]:
    """Join torchrun's process group for several :func:`erf` calls; yield ``(rank, world)``.

    Outside ``torchrun`` this yields ``(0, 1)`` and does nothing.  The group is created
    once (gloo on the CPU, NCCL on CUDA) and destroyed on exit, so calls inside share it.
    """
    chosen = resolve_device(device, _local_rank())
    group = _join_group(None, chosen)
    try:
        yield group.rank, group.world
    finally:
        group.close()


# ---------------------------------------------------------------------------------------
# layers


class _Stop(Exception):
    """Raised by a forward hook to stop the model once the chosen layer has run."""

    def __init__(self, output: Any) -> None:
        super().__init__("stop")
        self.output = output


def _candidate_names(model: Any) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def _fx_graph(model: Any) -> Any:
    import torch.fx

    try:
        return torch.fx.symbolic_trace(model)
    except Exception as exc:
        raise ModelError(
            f"torch.fx cannot trace {type(model).__name__} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); name a module instead "
            "(see model.named_modules())"
        ) from exc


@contextlib.contextmanager
def _layer_function(model: Any, layer: str | None) -> Iterator[Callable[[Any], Any]]:
    """A function ``x -> output of layer`` (the model's output for ``None``).

    A module name installs a forward hook that stops the model once the module has run
    (its first call); any other name is looked up among the fx graph's nodes, and the
    graph is cut after that node.
    """
    if layer is None:
        yield model
        return
    modules = dict(model.named_modules())
    if layer in modules and layer:
        target = modules[layer]

        def hook(module: Any, args: Any, output: Any) -> None:
            raise _Stop(output)

        handle = target.register_forward_hook(hook)

        def run(x: Any) -> Any:
            try:
                model(x)
            except _Stop as stop:
                return stop.output
            raise ModelError(f"layer {layer!r} did not run in the model's forward pass")

        try:
            yield run
        finally:
            handle.remove()
        return
    graph_module = _fx_graph(model)
    nodes = {node.name: node for node in graph_module.graph.nodes}
    node = nodes.get(layer) or nodes.get(layer.replace(".", "_"))
    if node is None or node.op in ("placeholder", "output"):
        names = _candidate_names(model) + [n for n, v in nodes.items() if v.op != "placeholder"]
        close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
        hint = (
            f"; did you mean {', '.join(close)}?"
            if close
            else (f"; module names look like {', '.join(names[:5])}" if names else "")
        )
        raise ModelError(f"layer {layer!r} is neither a module nor an fx node of the model{hint}")
    output = next(n for n in graph_module.graph.nodes if n.op == "output")
    output.args = (node,)
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()
    yield graph_module


def _spatial_output(out: Any, layer: str | None, ndim: int) -> Any:
    from .gradient import require_torch

    torch = require_torch()
    where = f"layer {layer!r}" if layer else "the model"
    if not isinstance(out, torch.Tensor):
        raise ModelError(
            f"the output of {where} is a {type(out).__name__}, not a tensor; "
            "choose a layer with --layer (a module name or fx node)"
        )
    if out.ndim != ndim + 2:
        raise ModelError(
            f"the output of {where} has shape {list(out.shape)}, without the {ndim} spatial "
            "axes of the input, so it has no centre unit; choose a layer with spatial output "
            "with --layer (e.g. the last convolution stage, such as 'layer4' of a ResNet)"
        )
    if not out.requires_grad:
        raise ModelError(
            f"the output of {where} does not depend differentiably on the input "
            "(computed without autograd?)"
        )
    return out


# ---------------------------------------------------------------------------------------
# the analytic receptive field (rfmap.trace), behind one function


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
        from .trace import model_rf
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


# ---------------------------------------------------------------------------------------
# probing shapes and memory on the meta device


def _meta_clone(model: Any) -> Any:
    """A copy of ``model`` on PyTorch's meta device (shapes only, no memory), or ``None``."""
    from .gradient import require_torch

    torch = require_torch()
    # Pre-seed deepcopy's memo with meta stand-ins, so no parameter data is ever copied.
    memo: dict[int, Any] = {}
    with torch.no_grad():
        for p in model.parameters():
            memo[id(p)] = torch.nn.Parameter(
                torch.empty_like(p, device="meta"), requires_grad=p.requires_grad
            )
        for b in model.buffers():
            memo[id(b)] = torch.empty_like(b, device="meta")
    try:
        return copy.deepcopy(model, memo).to("meta")
    except Exception:
        return None


def _probe(
    clone: Any, layer: str | None, shape: tuple[int, ...], dtype: Any
) -> tuple[tuple[int, ...], int] | None:
    """Output shape (batch 1) and activation bytes per input, run on a meta-device clone.

    The bytes are those autograd saves for the backward pass, counted for batches of one
    and two inputs; their difference is the cost of one more input.
    """
    from .gradient import require_torch

    torch = require_torch()
    if clone is None:
        return None
    saved: list[int] = []

    def pack(t: Any) -> Any:
        saved[-1] += t.numel() * t.element_size()
        return t

    shapes = []
    try:
        with _layer_function(clone, layer) as fn, torch.enable_grad():
            for batch in (1, 2):
                saved.append(0)
                x = torch.empty((batch, *shape), device="meta", dtype=dtype, requires_grad=True)
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    out = fn(x)
                if not isinstance(out, torch.Tensor):
                    return None
                shapes.append(tuple(out.shape))
    except Exception:
        return None
    return shapes[0], max(saved[1] - saved[0], 1)


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
    from .gradient import require_torch

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


def _output_shape_real(
    fn: Callable[[Any], Any], shape: tuple[int, ...], dtype: Any, device: Any, layer: str | None
) -> tuple[int, ...]:
    from .gradient import require_torch

    torch = require_torch()
    x = torch.zeros((1, *shape), dtype=dtype, device=device, requires_grad=True)
    with torch.enable_grad():
        out = _spatial_output(_call(fn, x, layer), layer, len(shape) - 1)
    return tuple(out.shape)


def _call(fn: Callable[[Any], Any], x: Any, layer: str | None) -> Any:
    try:
        return fn(x)
    except RFMapError:
        raise
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelError(
            f"the model failed on an input of shape {list(x.shape)}: {type(exc).__name__}: "
            f"{message}"
        ) from exc


def _memory_budget(device: Any) -> int:
    from .gradient import require_torch

    torch = require_torch()
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return CPU_MEMORY_BUDGET
    return int(min(CPU_MEMORY_BUDGET, available * 0.4))


# ---------------------------------------------------------------------------------------
# inputs


#: Spatial slices of a crop (``None``: the whole input).
_Window = tuple[slice, ...] | None


@dataclass
class _Source:
    """A uniform view of the inputs: a count (if known) and batches of numpy/torch arrays.

    ``batches(size, rank, world, window)`` yields ``(start, batch)`` for this process's
    batches, each input cropped to ``window`` as soon as it is read, so that only the
    crops of a batch are held in memory, however large the inputs are.
    """

    input_size: tuple[int, ...]
    count: int | None
    names: Callable[[int], str]
    description: dict[str, Any]
    batches: Callable[[int, int, int, _Window], Iterator[tuple[int, Any]]]


def _source(inputs: Any, limit: int | None) -> _Source:
    from .gradient import require_torch

    torch = require_torch()
    if isinstance(inputs, ImageSet):
        image_set = inputs
        count = len(image_set) if limit is None else min(limit, len(image_set))

        def image_batches(
            size: int, rank: int, world: int, window: _Window
        ) -> Iterator[tuple[int, Any]]:
            starts = range(0, count, size)[rank::world]
            yield from _prefetch(image_set, starts, size, count, window)

        return _Source(
            tuple(image_set.input_size),
            count,
            lambda i: image_set.names[i],
            image_set.to_dict() | {"count": count},
            image_batches,
        )
    if isinstance(inputs, (np.ndarray, torch.Tensor)):
        array = inputs
        if array.ndim < 3:
            raise RFMapError(
                f"inputs must be a batch of shape (N, C, *spatial), got shape {list(array.shape)}"
            )
        count = array.shape[0] if limit is None else min(limit, array.shape[0])
        if count < 1:
            raise RFMapError("inputs hold no images (N = 0)")

        def array_batches(
            size: int, rank: int, world: int, window: _Window
        ) -> Iterator[tuple[int, Any]]:
            for start in range(0, count, size)[rank::world]:
                yield start, _cropped(array[start : min(start + size, count)], window)

        return _Source(
            tuple(int(s) for s in array.shape[1:]),
            count,
            lambda i: f"input {i}",
            {"kind": "array", "count": count, "input_size": list(array.shape[1:])},
            array_batches,
        )
    if isinstance(inputs, Iterable) and not isinstance(inputs, (str, bytes)):
        iterator = iter(inputs)
        try:
            first = _batch_tensor(next(iterator))
        except StopIteration:
            raise RFMapError("inputs hold no batches") from None

        expected = tuple(int(s) for s in first.shape[1:])

        def iter_batches(
            size: int, rank: int, world: int, window: _Window
        ) -> Iterator[tuple[int, Any]]:
            seen = 0
            for index, item in enumerate(_chain(first, iterator)):
                batch = _batch_tensor(item)
                if tuple(batch.shape[1:]) != expected:
                    raise RFMapError(
                        f"input {seen} has shape {list(batch.shape[1:])}, expected {list(expected)}"
                    )
                if limit is not None:
                    batch = batch[: max(0, limit - seen)]
                if len(batch) == 0:
                    return
                if index % world == rank:
                    yield seen, _cropped(batch, window)
                seen += len(batch)

        return _Source(
            tuple(int(s) for s in first.shape[1:]),
            None,
            lambda i: f"input {i}",
            {"kind": "batches", "input_size": list(first.shape[1:])},
            iter_batches,
        )
    raise RFMapError(
        "inputs must be an ImageSet (noise_images, sample_images, folder_images), an array "
        f"of shape (N, C, *spatial) or an iterable of such batches, got {type(inputs).__name__}"
    )


def _cropped(batch: Any, window: _Window) -> Any:
    """``batch[:, :, *window]`` (a view)."""
    if window is None:
        return batch
    index = (slice(None), slice(None), *window)
    return batch[index]


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _batch_tensor(item: Any) -> Any:
    from .gradient import require_torch

    torch = require_torch()
    if isinstance(item, (tuple, list)) and item:
        item = item[0]  # (images, labels) as a DataLoader yields them
    if isinstance(item, np.ndarray):
        item = torch.from_numpy(item)
    if not isinstance(item, torch.Tensor) or item.ndim < 3:
        raise RFMapError(
            "each batch must be a tensor of shape (N, C, *spatial) or an (images, labels) pair, "
            f"got {type(item).__name__}"
        )
    return item


def _prefetch(
    image_set: ImageSet, starts: Sequence[int], size: int, count: int, window: _Window
) -> Iterator[tuple[int, np.ndarray]]:
    """Load batches in worker threads, one batch ahead, so decoding overlaps the model.

    Each input is cropped to ``window`` as soon as it is loaded: a batch holds crops only.
    """
    index = (slice(None), *window) if window is not None else ()

    def load(i: int) -> np.ndarray:
        return np.ascontiguousarray(image_set.load(i)[index])

    if len(starts) <= 1 or image_set.kind.value == "noise":
        for start in starts:
            indices = range(start, min(start + size, count))
            yield start, np.stack([load(i) for i in indices])
        return
    # Each worker holds one full-size input while it decodes and resizes it.
    full = math.prod(image_set.input_size) * 4
    workers = max(1, min(8, os.cpu_count() or 1, MAX_BATCH_BYTES // (2 * full)))
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def submit(start: int) -> list[Future[np.ndarray]]:
            indices = range(start, min(start + size, count))
            return [pool.submit(load, i) for i in indices]

        pending = submit(starts[0])
        for position, start in enumerate(starts):
            current = pending
            if position + 1 < len(starts):
                pending = submit(starts[position + 1])
            yield start, np.stack([f.result() for f in current])


# ---------------------------------------------------------------------------------------
# the measurement


@contextlib.contextmanager
def _prepared(model: Any, device: Any, channels_last: bool) -> Iterator[Any]:
    """Eval mode, no parameter gradients, on ``device`` (channels-last if asked).

    Everything is restored afterwards: modes, ``requires_grad``, and the very tensors the
    parameters and buffers held (so device and memory layout are as before).
    """
    from .gradient import require_torch

    torch = require_torch()
    if not isinstance(model, torch.nn.Module):
        raise RFMapError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    training = {m: m.training for m in model.modules()}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    data = [(p, p.data) for p in model.parameters()]
    buffers = [(m, dict(m._buffers)) for m in model.modules()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        if any(t.device != device for t in [*model.parameters(), *model.buffers()]):
            model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        yield model
    finally:
        for p, tensor in data:
            p.data = tensor
        for module, saved in buffers:
            module._buffers.update(saved)
        for p, flag in flags:
            p.requires_grad_(flag)
        for module, mode in training.items():
            module.training = mode


@contextlib.contextmanager
def _deterministic(device: Any) -> Iterator[None]:
    """On CUDA, deterministic cuDNN algorithms (no autotuning) for the run, then restored.

    cuDNN's default backward convolutions may add in a different order on each run (maps
    differed by 7e-8 between two identical runs on an H200); the deterministic ones gave
    bit-identical maps at the same speed there.
    """
    if device.type != "cuda":
        yield
        return
    import torch

    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def _dtype_of(model: Any) -> Any:
    from .gradient import require_torch

    torch = require_torch()
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _normalise_unit(unit: Sequence[int] | None, out_spatial: tuple[int, ...]) -> tuple[int, ...]:
    if unit is None:
        return tuple(n // 2 for n in out_spatial)
    units = tuple(unit)
    if len(units) != len(out_spatial) or not all(
        isinstance(u, (int, np.integer)) and not isinstance(u, bool) and 0 <= u < n
        for u, n in zip(units, out_spatial, strict=True)
    ):
        raise RFMapError(
            f"unit {list(units)} is outside the output grid of shape {list(out_spatial)}"
        )
    return tuple(int(u) for u in units)


def erf(
    model: Any,
    inputs: Any,
    layer: str | None = None,
    *,
    unit: Sequence[int] | None = None,
    gradient: Gradient | str = Gradient.ABS,
    output_relu: bool = False,
    num_images: int | None = None,
    batch_size: int | None = None,
    device: str | Any = "auto",
    crop: bool = True,
    check_crop: bool = False,
    channels_last: bool | None = None,
    distributed: bool | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    memory_budget: int | None = None,
    name: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> ERFResult:
    """Measure the effective receptive field of one unit of ``model``, over ``inputs``.

    The contribution of input pixel ``p`` is ``|d target / d x[:, p]|`` summed over the
    input channels, where the target is the unit's value summed over the output channels
    of ``layer``; the map is the mean over the inputs.

    Parameters
    ----------
    model
        An ``nn.Module``; run in eval mode without parameter gradients, then restored.
    inputs
        An :class:`~rfmap.images.ImageSet` (``noise_images``, ``sample_images``,
        ``folder_images``), an array/tensor ``(N, C, *spatial)``, or an iterable of such
        batches (e.g. a ``DataLoader`` yielding ``(images, labels)``).
    layer
        A module name (``"layer4"``) or a torch.fx node name; ``None``: the model output.
    unit
        Output unit, one index per spatial axis; default the centre, ``n // 2``.
    gradient
        ``"abs"`` (Luo), ``"relu"`` (RepLKNet) or ``"signed"`` (see :class:`Gradient`).
    output_relu
        Sum ``relu(output)`` over channels, as RepLKNet does, instead of the output.
    num_images
        Use at most this many inputs.
    batch_size
        Inputs per forward/backward pass; default from ``memory_budget``.
    device
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    crop
        Compute on the smallest stride-aligned crop holding the unit's theoretical
        receptive field when that is exact (the same gradient, less work).
    check_crop
        Also compute the first input on the full image and check it equals the crop.
    channels_last
        Run in PyTorch's channels-last memory format (default: for 2D inputs; measured
        1.17-1.3x faster on two cores of one CPU, no change on another CPU or on an H200);
        the model is restored.
    distributed
        ``None``: join torchrun's process group when there is one; ``False``: never.
    thresholds
        Shares for the area ratios.
    memory_budget
        Bytes of activations per batch for the automatic batch size (default: half the
        free GPU memory, or up to 2 GiB of RAM).
    name
        Display name (default: the model's class name).
    progress
        Called as ``progress(done, total)`` after every batch of this process.

    Returns
    -------
    ERFResult
        The same on every process of a distributed run.
    """
    from .gradient import require_torch

    torch = require_torch()
    try:
        mode = Gradient(gradient)
    except ValueError:
        choices = ", ".join(g.value for g in Gradient)
        raise RFMapError(f"gradient must be one of {choices}, got {gradient!r}") from None
    if num_images is not None and (
        isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1
    ):
        raise RFMapError(f"num_images must be a positive integer, got {num_images!r}")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise RFMapError(f"batch_size must be a positive integer, got {batch_size!r}")
    if layer is not None and not isinstance(layer, str):
        raise RFMapError(f"layer must be a module or fx node name, got {layer!r}")
    thresholds = tuple(thresholds)
    for t in thresholds:  # checked before the measurement, not after it
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 < t <= 1:
            raise RFMapError(f"thresholds must be shares in (0, 1], got {t!r}")
    source = _source(inputs, num_images)
    input_size = source.input_size
    spatial = input_size[1:]
    ndim = len(spatial)
    if not 1 <= ndim <= 3:
        raise RFMapError(
            f"inputs must have 1, 2 or 3 spatial axes, got input size {list(input_size)}"
        )
    if isinstance(inputs, ImageSet):  # each input is read in full (float32), then cropped
        _check_input_bytes(input_size)
    chosen = resolve_device(device, _local_rank())
    group = _join_group(distributed, chosen)
    notes: list[str] = []
    started = time.perf_counter()
    try:
        layout = ndim == 2 if channels_last is None else bool(channels_last)
        with _prepared(model, chosen, layout) as prepared, _deterministic(chosen):
            if group.sync_model(prepared, chosen):
                notes.append(
                    "the processes held different parameters (e.g. a randomly initialised "
                    "model without a weights file): every process now uses rank 0's"
                )
            dtype = _dtype_of(prepared)
            clone = _meta_clone(prepared)
            probe = _probe(clone, layer, input_size, dtype)
            with _layer_function(prepared, layer) as fn:
                if probe is not None and len(probe[0]) == ndim + 2:
                    out_shape = probe[0]
                else:  # a real forward pass reports any problem in full
                    out_shape = _output_shape_real(fn, input_size, dtype, chosen, layer)
                out_spatial = tuple(int(n) for n in out_shape[2:])
                the_unit = _normalise_unit(unit, out_spatial)
                theory, theory_note = _theoretical_rf(
                    prepared, input_size, layer, the_unit, out_spatial, clone
                )
                box, crop_note = (
                    _crop_box(theory, spatial, theory_note) if crop else (None, "crop disabled")
                )
                run_unit = the_unit
                crop_probe = None
                if box is not None and theory is not None:
                    run_unit = tuple(
                        u - a // int(j)
                        for u, (a, _), j in zip(the_unit, box, theory.stride, strict=True)
                    )
                    crop_shape = (input_size[0], *(b - a for a, b in box))
                    crop_probe, fits = _crop_runs(
                        clone, fn, layer, crop_shape, dtype, run_unit, chosen
                    )
                    if not fits:
                        box, run_unit = None, the_unit
                        crop_note = "the crop is too small for the model to run: full input"
                region = spatial if box is None else tuple(b - a for a, b in box)
                if check_crop and box is not None:
                    _verify_crop(
                        fn,
                        source,
                        box,
                        the_unit,
                        run_unit,
                        mode,
                        output_relu,
                        chosen,
                        dtype,
                        layer,
                        torch,
                    )
                if batch_size is None:
                    size = _auto_batch(
                        crop_probe if box else probe,
                        chosen,
                        memory_budget,
                        group,
                    )
                else:
                    size = batch_size
                if group.world > 1 and source.count is not None and batch_size is None:
                    # Batches are dealt round-robin: make sure every process gets some.
                    size = max(1, min(size, math.ceil(source.count / group.world)))
                del clone
                _check_batch_bytes(size, (input_size[0], *region), dtype)
                total, count = _accumulate(
                    fn,
                    source,
                    size,
                    box,
                    spatial,
                    run_unit,
                    mode,
                    output_relu,
                    chosen,
                    dtype,
                    layer,
                    group,
                    progress,
                    torch,
                    layout,
                )
    finally:
        group.close()
    seconds = time.perf_counter() - started
    mean = total / max(count, 1)
    where = _metric_centre(unit, theory, spatial, mean)
    metrics = erf_metrics(
        mean,
        thresholds=thresholds,
        centre=where,
        theoretical_rf=None if theory is None else theory.compared_rf,
    )
    label = name or type(model).__name__
    if not np.any(mean):
        where_text = f"layer {layer!r}" if layer else "the model output"
        message = (
            f"the ERF of {label} at {where_text}, unit {list(the_unit)}, is all zero: the unit "
            "never responds to these inputs (dead units, e.g. ReLUs that are always off, or a "
            "layer that does not depend on the input)"
        )
        notes.append(message)
        warnings.warn(message, ERFWarning, stacklevel=2)
    # On a global axis the field is the whole input, whatever its size: compare the
    # input with the field of the local paths there (a squeeze-excitation network's
    # convolutions), which the border does cut off.
    if theory is not None and any(r > n for r, n in zip(theory.compared_rf, spatial, strict=True)):
        local = " of its paths through no global operation" if theory.uses_local else ""
        message = (
            f"the input ({'x'.join(map(str, spatial))}) is smaller than the theoretical "
            f"receptive field{local} ({'x'.join(map(str, theory.compared_rf))}) of "
            f"{'layer ' + repr(layer) if layer else 'the model'}: the ERF is cut off at the "
            "border; use a larger input size"
        )
        notes.append(message)
        warnings.warn(message, ERFWarning, stacklevel=2)
    return ERFResult(
        map=mean,
        count=count,
        name=label,
        layer=layer,
        unit=the_unit,
        output_shape=out_spatial,
        input_size=input_size,
        gradient=mode,
        output_relu=bool(output_relu),
        inputs=source.description | {"count": count},
        metrics=metrics,
        theoretical=theory,
        theoretical_note=theory_note,
        crop=box,
        crop_note=crop_note,
        device=str(chosen),
        world_size=group.world,
        batch_size=size,
        channels_last=layout,
        seconds=seconds,
        notes=tuple(notes),
    )


def _metric_centre(
    unit: Sequence[int] | None,
    theory: TheoreticalRF | None,
    spatial: tuple[int, ...],
    mean: np.ndarray,
) -> tuple[int, ...] | None:
    """Centre of the squares: the input centre for the centre unit (as RepLKNet), else the
    centre of the unit's field (of its local paths on a global axis) when known, else the
    map's centre of mass."""
    if unit is None:
        return None
    if theory is None:
        fit = gaussian_fit(mean)  # the centre of mass
        if fit is None:
            return None
        return tuple(min(max(round(c), 0), n - 1) for c, n in zip(fit.centre, spatial, strict=True))
    if theory.centre is not None:
        return theory.centre
    return tuple(
        min(max((a + b - 1) // 2, 0), n - 1)
        for (a, b), n in zip(theory.field_box, spatial, strict=True)
    )


def _auto_batch(
    probe: tuple[tuple[int, ...], int] | None, device: Any, budget: int | None, group: _Group
) -> int:
    """A batch size whose saved activations fit ``budget``; the same on every process."""
    from .gradient import require_torch

    torch = require_torch()
    if probe is None:
        size = FALLBACK_BATCH
    else:
        limit = budget if budget is not None else _memory_budget(device)
        size = int(max(1, min(MAX_AUTO_BATCH, limit // probe[1])))
    # Every process must deal the same batches, or the split would differ.
    agreed = torch.tensor([size], dtype=torch.int64, device=_comm_device(group, device))
    return int(group.all_reduce(agreed, "min").item())


def _comm_device(group: _Group, device: Any) -> Any:
    return device if group.backend == "nccl" else "cpu"


def _check_input_bytes(shape: tuple[int, ...]) -> None:
    need = math.prod(shape) * 4
    if need > MAX_BATCH_BYTES:
        raise MapTooLargeError(
            f"one input of size {'x'.join(map(str, shape))} needs {need / 2**30:.1f} GiB "
            f"(float32), more than {MAX_BATCH_BYTES / 2**30:.0f} GiB; use a smaller input size"
        )


def _check_batch_bytes(size: int, shape: tuple[int, ...], dtype: Any) -> None:
    from .gradient import require_torch

    torch = require_torch()
    itemsize = torch.empty((), dtype=dtype).element_size()
    need = size * math.prod(shape) * itemsize
    if need > MAX_BATCH_BYTES:
        raise MapTooLargeError(
            f"a batch of {size} inputs of size {'x'.join(map(str, shape))} needs "
            f"{need / 2**30:.1f} GiB, more than {MAX_BATCH_BYTES / 2**30:.0f} GiB; "
            "use a smaller batch size or input size"
        )


def _contributions(
    fn: Callable[[Any], Any],
    x: Any,
    unit: tuple[int, ...],
    mode: Gradient,
    output_relu: bool,
    layer: str | None,
    torch: Any,
) -> Any:
    """Per-input contribution maps ``(B, *spatial)`` of one batch (same dtype as x)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = _spatial_output(_call(fn, x, layer), layer, x.ndim - 2)
        if any(u >= n for u, n in zip(unit, out.shape[2:], strict=True)):
            raise ModelError(
                f"unit {list(unit)} is outside the output of shape {list(out.shape[2:])}"
            )
        index = (slice(None), slice(None), *unit)
        value = out[index]
        if output_relu:
            value = torch.relu(value)
        (grad,) = torch.autograd.grad(value.sum(), x, allow_unused=True)
    if grad is None:
        return torch.zeros(x.shape[:1] + x.shape[2:], dtype=x.dtype, device=x.device)
    if mode is Gradient.ABS:
        grad = grad.abs()
    elif mode is Gradient.RELU:
        grad = torch.relu(grad)
    return grad.sum(dim=1)


def _accumulate(
    fn: Callable[[Any], Any],
    source: _Source,
    size: int,
    box: tuple[tuple[int, int], ...] | None,
    spatial: tuple[int, ...],
    unit: tuple[int, ...],
    mode: Gradient,
    output_relu: bool,
    device: Any,
    dtype: Any,
    layer: str | None,
    group: _Group,
    progress: Callable[[int, int | None], None] | None,
    torch: Any,
    channels_last: bool = False,
) -> tuple[np.ndarray, int]:
    """Sum the contribution maps of this process's batches; all-reduce over processes."""
    window = None if box is None else tuple(slice(a, b) for a, b in box)
    region = spatial if box is None else tuple(b - a for a, b in box)
    total = torch.zeros(region, dtype=torch.float64, device=device)
    count = 0
    failure = ""
    local_total = None if source.count is None else _local_count(source.count, size, group)
    try:
        for start, part in source.batches(size, group.rank, group.world, window):
            x = (
                torch.from_numpy(np.ascontiguousarray(part))
                if isinstance(part, np.ndarray)
                else part
            ).to(device=device, dtype=dtype)
            if channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            maps = _contributions(fn, x, unit, mode, output_relu, layer, torch)
            finite = torch.isfinite(maps).flatten(1).all(dim=1)
            if not bool(finite.all()):
                bad = int((~finite).nonzero()[0, 0])
                raise ModelError(
                    f"the gradient for {source.names(start + bad)} holds NaN or infinite values "
                    f"at {'layer ' + repr(layer) if layer else 'the model output'}: the model "
                    "overflows or divides by zero on this input"
                )
            total += maps.sum(dim=0, dtype=torch.float64)
            count += int(maps.shape[0])
            if progress is not None:
                progress(count, local_total)
    except RFMapError as exc:
        if group.world == 1:
            raise
        failure = str(exc)
    if group.world > 1:
        comm = _comm_device(group, device)
        flag = group.all_reduce(torch.tensor([1 if failure else 0], device=comm), "max")
        if int(flag.item()):
            raise ModelError(failure or "another process of the distributed run failed")
        total = group.all_reduce(total.to(comm))
        count = int(group.all_reduce(torch.tensor([count], dtype=torch.int64, device=comm)).item())
    if count == 0:
        raise RFMapError("no inputs were processed")
    out = np.zeros(spatial, dtype=np.float64)
    index = () if box is None else tuple(slice(a, b) for a, b in box)
    out[index] = total.cpu().numpy()
    return out, count


def _local_count(count: int, size: int, group: _Group) -> int:
    """How many inputs this process gets: whole batches, plus the last one if it is ours."""
    starts = range(0, count, size)[group.rank :: group.world]
    if not starts:
        return 0
    return (len(starts) - 1) * size + min(size, count - starts[-1])


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
    _, batch = next(source.batches(1, 0, 1, None))
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


# ---------------------------------------------------------------------------------------
# saving and loading


def save_erf(results: ERFResult | Sequence[ERFResult], path: str | os.PathLike[str]) -> Path:
    """Write maps and metadata to an ``.npz`` file, atomically.

    Keys: ``map_0``, ``map_1``, ... (float64 mean maps), ``normalised_0``, ... and
    ``meta``, a JSON string holding the list of ``to_dict()`` descriptions.
    """
    from ._io import atomic_path, check_output_path

    check_output_path(path, (".npz",))
    items = [results] if isinstance(results, ERFResult) else list(results)
    arrays: dict[str, Any] = {}
    for i, result in enumerate(items):
        arrays[f"map_{i}"] = result.map
        arrays[f"normalised_{i}"] = result.normalised
    arrays["meta"] = np.array(json.dumps([r.to_dict() for r in items]))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return Path(path)


def load_erf(path: str | os.PathLike[str]) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """Read a file written by :func:`save_erf`: ``[(map, description), ...]``."""
    file = Path(path)
    if not file.is_file():
        raise RFMapError(f"ERF file not found: {str(file)!r}")
    try:
        with np.load(file, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return [(np.array(data[f"map_{i}"]), meta[i]) for i in range(len(meta))]
    except (OSError, KeyError, ValueError) as exc:
        raise RFMapError(f"{str(file)!r} is not an ERF file written by rfmap: {exc}") from exc


class _CallableModule(types.ModuleType):
    """``rfmap.erf`` is this module *and* the function: ``rfmap.erf(model, inputs)`` works
    however the name was reached (``import rfmap.erf`` binds the module to ``rfmap.erf``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> ERFResult:
        return erf(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

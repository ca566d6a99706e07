"""The measurement: :func:`erf` and the loop that sums the contribution maps.

The model is prepared (eval mode, no parameter gradients, restored afterwards), the
unit's field decides the crop (:mod:`.crop`), the batch size follows from memory
(:mod:`.memory`), the inputs arrive in batches (:mod:`.inputs`) and the per-process
sums are all-reduced (:mod:`.distributed`).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..erf_metrics import DEFAULT_THRESHOLDS, erf_metrics, gaussian_fit
from ..errors import ModelError, RFMapError
from ..images import ImageSet
from .crop import _crop_box, _crop_runs, _theoretical_rf, _verify_crop
from .distributed import _comm_device, _Group, _join_group, _local_rank, resolve_device
from .inputs import _Source, _source
from .memory import (
    _auto_batch,
    _check_batch_bytes,
    _check_input_bytes,
    _meta_clone,
    _probe,
)
from .model import _contributions, _layer_function, _output_shape_real
from .result import ERFResult, ERFWarning, Gradient, TheoreticalRF

__all__ = ["erf"]


@contextlib.contextmanager
def _prepared(model: Any, device: Any, channels_last: bool) -> Iterator[Any]:
    """Eval mode, no parameter gradients, on ``device`` (channels-last if asked).

    Everything is restored afterwards: modes, ``requires_grad``, and the very tensors the
    parameters and buffers held (so device and memory layout are as before).
    """
    from ..gradient import require_torch

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
    from ..gradient import require_torch

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
    skip_unreadable: bool = False,
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
        Called as ``progress(done, total)`` after every batch of this process (e.g. a
        :class:`rfmap.progress.ProgressBar`).
    skip_unreadable
        Skip image files that cannot be read instead of failing: the result lists them
        (``skipped``, a note and an :class:`ERFWarning`) and the mean is over the inputs
        actually read (``count``).

    Returns
    -------
    ERFResult
        The same on every process of a distributed run.
    """
    from ..gradient import require_torch

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
    source = _source(inputs, num_images, bool(skip_unreadable))
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
    skipped = tuple(source.names(i) for i in source.skipped)
    if skipped:
        message = (
            f"skipped {len(skipped)} unreadable image{'s' if len(skipped) > 1 else ''} "
            f"({_listed(skipped)}): the mean is over the {count} images read"
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
        skipped=skipped,
    )


def _listed(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


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
        for indices, part in source.batches(size, group.rank, group.world, window):
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
                    f"the gradient for {source.names(indices[bad])} holds NaN or infinite values "
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
        source.skipped[:] = group.all_gather(source.skipped)
    # An image can be read twice (check_crop reads the first one again): list it once.
    source.skipped[:] = sorted(set(source.skipped))
    if count == 0:
        if source.skipped:
            raise RFMapError(
                f"no image could be read: all {len(source.skipped)} were skipped as unreadable"
            )
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

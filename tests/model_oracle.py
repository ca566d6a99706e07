"""A float64 gradient-support oracle for real models (issue 12's recipe), shared by the
tests and the zoo table (benchmarks/zoo.py).

The model is replaced by a *linearised copy* (:func:`rfmap.measure.linearised_copy`
under :func:`rfmap.measure.linearised`): float64, positive weights, activations and
dropout the identity, normalisations a positive constant scale, max pools window sums
of the same geometry.  Its Jacobian entries are sums of products of positive numbers,
so an input position has a non-zero gradient exactly when a path links it to the unit,
whatever the model's real weights -- with two exceptions, and what is done about them:

* attention keeps its softmax, whose Jacobian has both signs.  Several *random positive
  inputs* are fed at once (uniform in [0.5, 1.5], one batch) and the support is the
  union over them: an accidental cancellation does not survive a second input.  The
  same goes for ops that subtract (``x - mean``, hand-written normalisations);
* additive attention masks of -100 (timm's shifted windows) leave weights of about
  ``e**-100``, tiny but non-zero in float64.  The linearised softmax treats a weight
  below ``e**-50`` times the largest of its row as zero (it does not depend on its score
  at all), following the mask's intent: masked tokens are not read.  Normalisations
  keep the values of order one, so that no real weight comes near that threshold.

The support is then ``grad != 0``, exactly, with no threshold on the gradient.  A
threshold relative to the largest gradient (``|g| > max|g| * e**-50``) would be wrong: in
a deep network the number of paths to the centre of the field and to its corner
differ by far more than ``e**50`` (2D chain of 25 3x3 convolutions: about ``10**22``
paths to the centre, one to the corner), so real corners would be dropped.

The units to check are indexed on the analysis' spatial grid (``ReceptiveField.grid``);
the dims of a module output that hold it are found by size
(:func:`rfmap.measure.spatial_dims`): channels first ``(N, C, H, W)``, channels last
``(N, H, W, C)`` or tokens ``(N, T, C)`` with leading class/register tokens, in row-major
order.  Tokens in another order (timm's Hiera keeps them "unrolled" until its last stage)
need that order: ``GradientOracle.token_order[layer]``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rfmap.measure import (
    first_tensor,
    linearised,
    linearised_copy,
    spatial_dims,
    unit_index,
)

Box = tuple[tuple[int, int], ...]

#: Random positive inputs per check (their supports are united).
INPUTS = 3


class _Stop(Exception):
    pass


class GradientOracle:
    """The float64 gradient support of units of one or several layers of ``model``.

    ``layers``: module names, ``None`` for the model output, ``"output.i"`` for the
    i-th output tensor of a model with several (lists, dicts, feature pyramids).  One
    forward pass of a batch of ``inputs * slots`` random positive inputs; one backward
    pass per ``slots`` units (more slots: fewer backward passes, more memory).
    """

    def __init__(
        self,
        model: Any,
        input_size: Sequence[int],
        layers: Iterable[str | None] = (None,),
        *,
        inputs: int = INPUTS,
        slots: int = 1,
        seed: int = 0,
    ) -> None:
        from torch.utils._pytree import tree_leaves

        self.input_size = tuple(int(n) for n in input_size)
        self.inputs, self.slots = inputs, max(1, slots)
        #: layer -> the token index of each unit (grid-shaped), for token outputs that
        #: are not in row-major order (Hiera keeps its tokens "unrolled")
        self.token_order: dict[str | None, np.ndarray] = {}
        self.model = linearised_copy(model)
        wanted = list(dict.fromkeys(layers))
        modules = {}
        leaves: dict[str | None, int] = {}
        for name in wanted:
            module = None
            if name is not None:
                try:
                    module = self.model.get_submodule(name)
                except AttributeError:
                    if not re.fullmatch(r"output\.\d+", name):
                        raise
            if module is not None:
                modules[name] = module
            else:
                leaves[name] = 0 if name is None else int(name.split(".")[1])
        captured: dict[str | None, Any] = {}
        handles = []

        def make_hook(name: str) -> Any:
            def hook(module: Any, args: Any, output: Any) -> None:
                captured[name] = first_tensor(output)
                if not leaves and len(captured) == len(modules):
                    raise _Stop

            return hook

        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        gen = torch.Generator().manual_seed(seed)
        shape = (inputs * self.slots, *self.input_size)
        self.x = (0.5 + torch.rand(shape, generator=gen, dtype=torch.float64)).requires_grad_()
        try:
            with torch.enable_grad(), linearised(), contextlib.suppress(_Stop):
                out = self.model(self.x)
                tensors = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
                for name, i in leaves.items():
                    captured[name] = tensors[i] if i < len(tensors) else None
        finally:
            for handle in handles:
                handle.remove()
        missing = [name for name in wanted if captured.get(name) is None]
        if missing:
            raise ValueError(f"no tensor output captured for {missing}")
        self.outputs = {name: captured[name] for name in wanted}

    def supports(
        self,
        layer: str | None,
        grid: Sequence[int],
        units: Sequence[Sequence[int]],
        dims: Sequence[int] | None = None,
    ) -> list[np.ndarray]:
        """Input positions (spatial shape) whose gradient is non-zero for some input, per
        unit; ``slots`` units share one backward pass (each reads its own inputs)."""
        out = self.outputs[layer]
        if dims is None:
            dims = spatial_dims(out.shape, grid)
        if dims and dims[0] == 0:  # tokens folded into the batch: unfold them
            tokens = math.prod(int(g) for g in grid)
            out = out.reshape(out.shape[0] // tokens, tokens, *out.shape[1:])
            dims = (1,) * len(dims)
        masks: list[np.ndarray] = []
        n = self.inputs
        order = self.token_order.get(layer)
        for first in range(0, len(units), self.slots):
            chunk = units[first : first + self.slots]
            selected = out.new_zeros(())
            for k, unit in enumerate(chunk):
                index = unit_index(out.shape, dims, grid, unit) if dims else ()
                if order is not None:  # tokens in the model's own order
                    d = dims[0]
                    tokens = list(index)
                    tokens[d] = out.shape[d] - order.size + int(order[tuple(unit)])
                    index = tuple(tokens)
                rows = slice(None) if self.slots == 1 else slice(k * n, (k + 1) * n)
                # the samples are independent: so are their gradients
                selected = selected + out[(rows, *index[1:])].sum()
            (grad,) = torch.autograd.grad(selected, self.x, retain_graph=True, allow_unused=True)
            if grad is None:
                masks += [np.zeros(self.input_size[1:], dtype=bool) for _ in chunk]
                continue
            hit = (grad != 0).any(dim=1)
            for k in range(len(chunk)):
                rows = slice(None) if self.slots == 1 else slice(k * n, (k + 1) * n)
                masks.append(hit[rows].any(dim=0).numpy())
        return masks

    def support(
        self,
        layer: str | None,
        grid: Sequence[int],
        unit: Sequence[int],
        dims: Sequence[int] | None = None,
    ) -> np.ndarray:
        """:meth:`supports` of one unit."""
        return self.supports(layer, grid, [unit], dims)[0]

    def box(
        self,
        layer: str | None,
        grid: Sequence[int],
        unit: Sequence[int],
        dims: Sequence[int] | None = None,
    ) -> Box:
        """The half-open box ``(start, stop)`` per axis of :meth:`support`."""
        return mask_box(self.support(layer, grid, unit, dims))


def mask_box(mask: np.ndarray) -> Box:
    """Bounding box of a boolean mask, ``(0, 0)`` on axes where it is empty."""
    boxes = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other) if other else mask)
        boxes.append((int(hit[0]), int(hit[-1]) + 1) if len(hit) else (0, 0))
    return tuple(boxes)


def interior_units(grid: Sequence[int]) -> list[tuple[int, ...]]:
    """Units away from the border: the centre, its diagonal neighbour and the unit a
    quarter of the way in (fewer where the grid is small)."""
    picks: list[tuple[int, ...]] = []
    for unit in (
        tuple(n // 2 for n in grid),
        tuple(min(n - 1, n // 2 + 1) for n in grid),
        tuple(n // 4 for n in grid),
    ):
        if unit not in picks:
            picks.append(unit)
    return picks


def corner_units(grid: Sequence[int]) -> list[tuple[int, ...]]:
    """The first, second, middle, second-last and last unit per axis, all combinations."""
    axes = [sorted({0, 1, n // 2, n - 2, n - 1} & set(range(n))) for n in grid]
    return list(itertools.product(*axes))


@dataclass
class Mismatch:
    """A unit whose analytic box differs from the gradient's."""

    layer: str | None
    unit: tuple[int, ...]
    analytic: Box
    gradient: Box

    def __str__(self) -> str:
        return (
            f"{self.layer or 'output'} unit {list(self.unit)}: analysis {_fmt(self.analytic)}, "
            f"gradient {_fmt(self.gradient)}"
        )


def _fmt(box: Box) -> str:
    return " x ".join(f"[{a}, {b})" for a, b in box)


def check_boxes(
    oracle: GradientOracle,
    layer: str | None,
    result: Any,
    units: Iterable[Sequence[int]],
) -> tuple[list[Mismatch], dict[tuple[int, ...], Box]]:
    """Compare ``result.input_box(unit)`` (a ReceptiveField of ``layer``) with the
    gradient box of each unit; returns the mismatches and the gradient boxes."""
    mismatches = []
    boxes = {}
    chosen = [tuple(int(u) for u in unit) for unit in units]
    masks = oracle.supports(layer, result.grid, chosen)
    for unit, mask in zip(chosen, masks, strict=True):
        analytic = tuple(tuple(b) for b in result.input_box(unit))
        measured = mask_box(mask)
        boxes[unit] = measured
        if analytic != measured:
            mismatches.append(Mismatch(layer, unit, analytic, measured))  # type: ignore[arg-type]
    return mismatches, boxes

"""Receptive field of any PyTorch model: torch.fx tracing into a layer graph.

:func:`model_rf` traces the model with ``torch.fx``, runs it once on the given input
size (to learn every shape), and turns each operation into per-axis windows of an
:class:`~rfmap.receptive.RFGraph`, which :mod:`rfmap.receptive` analyses exactly.

* Convolutions (1D/2D/3D, stride, int/tuple/'same'/'valid' padding, padding modes,
  dilation, groups), transposed convolutions, max/avg/LP pools (ceil mode, padding),
  adaptive and global pools, ``interpolate``/``Upsample``, pixel (un)shuffle, pads,
  slices, ``flatten``/``view``/``permute``, ``Linear``, reductions, ``cat``, ``+``
  and other element-wise operations are derived, as modules, functions or methods.
* Activations, dropout and normalisations are the identity for the receptive field
  (normalisation statistics are treated as constants, as every RF calculator does).
* Anything else is *measured*: the operation alone is run through the gradient
  (:func:`rfmap.measure.measure_windows`), and the result says so.  A model that
  cannot be traced at all is measured as a whole (:func:`rfmap.measure.measure_model_rf`).

The model is run in eval mode (each module's mode is restored afterwards) and is
otherwise left untouched.  Needs PyTorch.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import difflib
import enum
import functools
import gc
import inspect
import math
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .errors import InvalidSpecError, ModelError, RFMapError, UnsupportedLayerError
from .gradient import require_torch
from .loading import parse_input_size
from .measure import LINEARISED_OPS, _one_line, _words, bind_args, first_tensor
from .measure import per_axis as axis_ints
from .receptive import (
    BROADCAST,
    IDENTITY,
    Adaptive,
    Conv,
    Edge,
    Node,
    PadMode,
    ReceptiveField,
    Resample,
    ResampleMode,
    RFGraph,
    Table,
    Transposed,
    Whole,
    Window,
    graph_rf,
)

__all__ = ["Method", "TracedModel", "model_rf", "trace_model"]

#: Largest number of traces tried while making untraceable submodules opaque.
_MAX_RETRACES = 32

#: Ops that act position by position: the identity for the receptive field.  With
#: several tensor inputs they broadcast (residual ``+``, gating ``*``).
_ELEMENTWISE = LINEARISED_OPS | _words(
    """
    abs neg exp log log1p sqrt rsqrt square reciprocal sign erf sin cos contiguous clone
    float double half bfloat16 to type type_as detach cpu cuda requires_grad_
    stochastic_depth channel_shuffle native_channel_shuffle floor ceil round trunc frac
    nan_to_num logit exp2 add add_ sub sub_ mul mul_ div div_ true_divide floor_divide
    truediv floordiv pow pow_ maximum minimum where masked_fill masked_fill_ addcmul
    addcdiv lerp fmod remainder iadd isub imul itruediv and_ or_ xor eq ne lt le gt ge
    atan2 hypot copysign mod rsub logical_and logical_or logical_xor logical_not
    bitwise_and bitwise_or bitwise_not fmax fmin
    """
)

#: Element-wise arithmetic whose meta result is just an empty tensor of the broadcast shape
#: (PyTorch computes it through slow reference decompositions).
_META_BROADCAST = frozenset(
    {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.truediv}
)

#: Reductions: the reduced dims are read whole.
_REDUCTIONS = _words(
    """
    mean sum amax amin prod std var logsumexp norm nansum nanmean median all any argmax
    argmin max min count_nonzero
    """
)

#: Ops whose result does not depend on the values of their tensor input.
_CONSTANTS = _words(
    """
    size dim numel zeros_like ones_like empty_like full_like rand_like randn_like new_zeros
    new_ones new_empty new_full new_tensor nelement ndimension stride data_ptr
    is_contiguous get_device element_size
    """
)

#: torch.nn modules that are the identity for the receptive field.
_IDENTITY_MODULES = _words(
    """
    BatchNorm1d BatchNorm2d BatchNorm3d SyncBatchNorm LazyBatchNorm1d LazyBatchNorm2d
    LazyBatchNorm3d LayerNorm GroupNorm InstanceNorm1d InstanceNorm2d InstanceNorm3d
    LazyInstanceNorm1d LazyInstanceNorm2d LazyInstanceNorm3d LocalResponseNorm
    CrossMapLRN2d RMSNorm Dropout Dropout1d Dropout2d Dropout3d AlphaDropout
    FeatureAlphaDropout Identity ChannelShuffle Softmax2d
    """
)


@functools.cache
def _module_classes() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """``(activations, identities)``: the torch.nn modules that act element-wise."""
    nn = require_torch().nn
    activations = tuple(
        getattr(nn, n)
        for n in dir(nn.modules.activation)
        if isinstance(getattr(nn, n, None), type)
        and issubclass(getattr(nn, n), nn.Module)
        and n not in ("MultiheadAttention", "Softmax", "LogSoftmax", "Softmin", "GLU", "Module")
    )
    identities = tuple(getattr(nn, n) for n in sorted(_IDENTITY_MODULES) if hasattr(nn, n))
    return activations, identities


class Method(str, enum.Enum):
    """How :func:`model_rf` gets the receptive field.

    ``auto``: derive it through torch.fx and measure, with the gradient, only what
    cannot be derived; ``analytic``: derive it or raise
    :class:`~rfmap.errors.UnsupportedLayerError`; ``measure``: measure the whole model.
    """

    AUTO = "auto"
    ANALYTIC = "analytic"
    MEASURE = "measure"


# -- tensor layouts ---------------------------------------------------------------------

# A layout describes each dim of a tensor as a tuple of atoms (axis, size) in row-major
# order; axis -1 is a non-spatial factor (batch, channels, features).  A plain NCHW
# tensor is (((-1, N),), ((-1, C),), ((0, H),), ((1, W),)); flatten(1) gives
# (((-1, N),), ((-1, C), (0, H), (1, W))).
Atom = tuple[int, int]
Layout = tuple[tuple[Atom, ...], ...]


@dataclass(frozen=True)
class _T:
    """What rfmap knows of a tensor that depends on the input: its node and layout."""

    node: str
    layout: Layout
    extents: tuple[int, ...]


class _Unsupported(Exception):
    """An operation that the layout/window rules cannot express."""


def _axes_of(dim: tuple[Atom, ...]) -> list[int]:
    return [a for a, _ in dim if a >= 0]


def _dim_axis(layout: Layout, axis: int) -> int | None:
    for d, atoms in enumerate(layout):
        if axis in _axes_of(atoms):
            return d
    return None


def _plain(shape: Sequence[int], axes: Sequence[int | None]) -> Layout:
    return tuple(
        ((a, int(n)),) if a is not None else ((-1, int(n)),)
        for n, a in zip(shape, axes, strict=True)
    )


def _extents(layout: Layout, ndim: int) -> tuple[int, ...]:
    ext = [1] * ndim
    for atoms in layout:
        for a, n in atoms:
            if a >= 0:
                ext[a] = n
    return tuple(ext)


def _single_axes(layout: Layout) -> list[int | None]:
    """The one axis each dim carries (None for none); multi-atom spatial dims fail."""
    out: list[int | None] = []
    for atoms in layout:
        axes = _axes_of(atoms)
        if len(axes) > 1 or (axes and len(atoms) > 1):
            raise _Unsupported("a spatial axis packed with others into one dim")
        out.append(axes[0] if axes else None)
    return out


def _reshape(layout: Layout, old: Sequence[int], new: Sequence[int]) -> Layout:
    """The layout after ``view``/``reshape``/``flatten`` from shape ``old`` to ``new``."""
    atoms: list[Atom] = [atom for dim in layout for atom in dim if atom[1] != 1]
    out: list[tuple[Atom, ...]] = []
    i = 0
    for size in new:
        size = int(size)
        if size == 1:
            out.append(((-1, 1),))
            continue
        collected: list[Atom] = []
        product = 1
        while product < size:
            if i >= len(atoms):
                raise _Unsupported("reshape")
            axis, n = atoms[i]
            if product * n <= size and size % (product * n) == 0:
                collected.append(atoms[i])
                product *= n
                i += 1
            elif axis < 0 and size % product == 0 and n % (size // product) == 0:
                part = size // product
                collected.append((-1, part))
                atoms[i] = (-1, n // part)
                product *= part
            else:
                raise _Unsupported("reshape that splits a spatial axis")
        merged: list[Atom] = []
        for atom in collected:
            if merged and merged[-1][0] < 0 and atom[0] < 0:
                merged[-1] = (-1, merged[-1][1] * atom[1])
            else:
                merged.append(atom)
        out.append(tuple(merged))
    if i != len(atoms) or math.prod(int(s) for s in new) != math.prod(int(s) for s in old):
        raise _Unsupported("reshape")
    return tuple(out)


# -- the op rules -----------------------------------------------------------------------


_PAD_MODES = {
    "zeros": PadMode.ZEROS,
    "constant": PadMode.ZEROS,
    "reflect": PadMode.REFLECT,
    "replicate": PadMode.REPLICATE,
    "circular": PadMode.CIRCULAR,
}


def _pad_mode(mode: str) -> PadMode:
    return _PAD_MODES.get(mode, PadMode.ZEROS)


def _conv_windows(
    nd: int,
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    pad_mode: PadMode = PadMode.ZEROS,
) -> list[Window]:
    k = axis_ints(kernel, nd)
    s = axis_ints(stride if stride not in (None, ()) else kernel, nd)
    d = axis_ints(dilation, nd)
    if isinstance(padding, str):
        if padding == "valid":
            left = (0,) * nd
        elif padding == "same":
            left = tuple((dd * (kk - 1)) // 2 for kk, dd in zip(k, d, strict=True))
        else:
            raise _Unsupported(f"padding {padding!r}")
    else:
        left = axis_ints(padding, nd)
    return [Conv(kk, ss, dd, -pp, pad_mode) for kk, ss, dd, pp in zip(k, s, d, left, strict=True)]


class _Builder:
    """Collects the nodes of the RFGraph while the fx graph is interpreted."""

    def __init__(self, ndim: int) -> None:
        self.ndim = ndim
        self.nodes: list[Node] = []
        self.names: set[str] = set()
        self.measured: list[str] = []
        self.notes: list[str] = []

    def add(
        self,
        name: str,
        op: str,
        layout: Layout,
        edges: Sequence[tuple[_T, Sequence[Window]]],
        shape: Sequence[int] | None,
        measured: bool = False,
        extents: tuple[int, ...] | None = None,
    ) -> _T:
        """Add a node; ``extents`` are those of ``layout`` (computed when not given)."""
        if extents is None:
            extents = _extents(layout, self.ndim)
        self.nodes.append(
            Node(
                name,
                op,
                extents,
                tuple(Edge(t.node, tuple(w)) for t, w in edges),
                None if shape is None else tuple(map(int, shape)),
                measured,
            )
        )
        self.names.add(name)
        if measured:
            self.measured.append(name)
        return _T(name, layout, extents)

    def same_grid(self, src: _T, out_extents: Sequence[int]) -> list[Window]:
        """Identity where the extents agree, broadcast where the source has extent 1."""
        windows: list[Window] = []
        for a in range(self.ndim):
            if src.extents[a] == out_extents[a]:
                windows.append(IDENTITY)
            elif src.extents[a] == 1:
                windows.append(BROADCAST)
            else:
                raise _Unsupported("inputs with different grids")
        return windows


def _is_tensor(value: Any) -> bool:
    torch = require_torch()
    return isinstance(value, torch.Tensor)


def _depends(states: Any) -> bool:
    """Whether ``states`` holds a tensor that depends on the input: ``bool(_deps(states))``."""
    if isinstance(states, _T):
        return True
    if isinstance(states, dict):
        states = states.values()
    elif not isinstance(states, (list, tuple)):
        return False
    return any(_depends(s) for s in states)


def _deps(states: Any) -> list[_T]:
    found: list[_T] = []

    def walk(s: Any) -> None:
        if isinstance(s, _T):
            found.append(s)
        elif isinstance(s, (list, tuple)):
            for item in s:
                walk(item)
        elif isinstance(s, dict):
            for item in s.values():
                walk(item)

    walk(states)
    return found


class _Rules:
    """Turns one fx node (with concrete values) into RFGraph nodes."""

    def __init__(self, builder: _Builder, root: Any) -> None:
        torch = require_torch()
        self.b = builder
        self.root = root
        self.torch = torch
        F = torch.nn.functional
        self.F = F
        nn = torch.nn
        self.nn = nn
        self.elementwise_ops = _ELEMENTWISE
        self.activation_modules, self.identity_modules = _module_classes()
        #: The exact classes that :meth:`module` reads as element-wise ops.
        self.elementwise_types = frozenset((*self.identity_modules, *self.activation_modules))
        #: The module of each call_module node, as the interpreter fetched it.
        self.modules: dict[str, Any] = {}
        self.conv_windows: dict[tuple[Any, ...], list[Window]] = {}

    # -- entry point -------------------------------------------------------------------
    def apply(
        self,
        node: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        states: Any,
        kwstates: Any,
        value: Any,
    ) -> Any:
        if not _depends((states, kwstates)):
            return None
        if node.op == "call_module":
            module = self.modules.get(node.target)
            if module is None:
                module = self.root.get_submodule(node.target)
            return self.module(node, module, args, kwargs, states, value)
        if node.op == "call_function":
            target = node.target
            if target is operator.getitem:
                return self.getitem(node, args, states, value)
            if target is builtins.getattr:
                return None
            name = getattr(target, "__name__", str(target))
            return self.function(node, target, name, args, kwargs, states, kwstates, value)
        if node.op == "call_method":
            return self.function(node, None, node.target, args, kwargs, states, kwstates, value)
        raise _Unsupported(node.op)

    # -- modules -----------------------------------------------------------------------
    def module(self, node: Any, m: Any, args: Any, kwargs: Any, states: Any, value: Any) -> Any:
        nn = self.nn
        name = node.name
        op = type(m).__name__
        x = _need(states[0] if states else None, op)
        if type(m) in self.elementwise_types:
            # norms, activations, dropout: what the last branch below does (none of
            # these classes is caught by an earlier one, which a test checks)
            return self.elementwise(name, op, states, value)
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nd = m.weight.dim() - 2
            geometry = (nd, m.kernel_size, m.stride, m.padding, m.dilation, m.padding_mode)
            try:  # convolutions of one geometry share their (immutable) windows
                windows = self.conv_windows[geometry]
            except KeyError:
                windows = _conv_windows(*geometry[:-1], _pad_mode(m.padding_mode))
                self.conv_windows[geometry] = windows
            except TypeError:  # an unhashable attribute (a list set by hand)
                windows = _conv_windows(*geometry[:-1], _pad_mode(m.padding_mode))
            return self.spatial(name, op, x, value, nd, windows)
        if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nd = m.weight.dim() - 2
            windows = [
                Transposed(k, s, d, p)
                for k, s, d, p in zip(
                    axis_ints(m.kernel_size, nd),
                    axis_ints(m.stride, nd),
                    axis_ints(m.dilation, nd),
                    axis_ints(m.padding, nd),
                    strict=True,
                )
            ]
            return self.spatial(name, op, x, value, nd, windows)
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
            nd = int(op[-2])
            windows = _conv_windows(nd, m.kernel_size, m.stride, m.padding, m.dilation)
            return self.spatial(name, op, x, value, nd, windows)
        if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
            nd = int(op[-2])
            windows = _conv_windows(nd, m.kernel_size, m.stride, m.padding, 1)
            return self.spatial(name, op, x, value, nd, windows)
        if isinstance(m, (nn.LPPool1d, nn.LPPool2d)) or op == "LPPool3d":
            nd = int(op[-2])
            return self.spatial(
                name, op, x, value, nd, _conv_windows(nd, m.kernel_size, m.stride, 0, 1)
            )
        if op.startswith("Adaptive") and op.endswith(("Pool1d", "Pool2d", "Pool3d")):
            return self.adaptive(name, op, x, value, int(op[-2]))
        if isinstance(m, nn.Linear) or op == "LazyLinear":
            return self.linear(name, op, x, value)
        if isinstance(m, nn.Flatten):
            return self.layout_op(
                name, op, x, value, self.flatten(x, args[0], m.start_dim, m.end_dim)
            )
        if isinstance(m, nn.Unflatten):
            return self.layout_op(
                name, op, x, value, _reshape(x.layout, args[0].shape, value.shape)
            )
        if isinstance(m, nn.Upsample):
            return self.interpolate(
                name,
                op,
                x,
                args[0],
                value,
                m.scale_factor,
                m.mode,
                m.align_corners,
                getattr(m, "recompute_scale_factor", None),
            )
        if isinstance(m, nn.PixelShuffle):
            return self.pixel_shuffle(name, op, x, value, m.upscale_factor, up=True)
        if isinstance(m, nn.PixelUnshuffle):
            return self.pixel_shuffle(name, op, x, value, m.downscale_factor, up=False)
        if op.endswith(("Pad1d", "Pad2d", "Pad3d")):
            mode = {
                "Reflection": "reflect",
                "Replication": "replicate",
                "Circular": "circular",
            }.get(op[: op.index("Pad")], "constant")
            return self.pad(name, op, x, value, m.padding, mode)
        if isinstance(m, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
            return self.along(name, op, x, value, m.dim)
        if isinstance(m, nn.GLU):
            return self.along(name, op, x, value, m.dim, halves=True)
        if isinstance(m, (self.identity_modules, self.activation_modules)):
            return self.elementwise(name, op, states, value)
        raise _Unsupported(op)

    # -- functions and methods ---------------------------------------------------------
    def function(
        self,
        node: Any,
        target: Any,
        fname: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        states: Any,
        kwstates: Any,
        value: Any,
    ) -> Any:
        torch = self.torch
        name = node.name
        x = states[0] if states and isinstance(states[0], _T) else None
        if fname in _CONSTANTS:
            return None
        if not _is_tensor(value) and not isinstance(value, (tuple, list)):
            return None
        if fname in ("conv1d", "conv2d", "conv3d"):
            b = bind_args(
                args, kwargs, ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
            )
            if _deps(states[1:]) or _deps(kwstates):
                raise _Unsupported("a convolution whose weight depends on the input")
            nd = int(fname[-2])
            w = b["weight"]
            windows = _conv_windows(
                nd,
                tuple(w.shape[2:]),
                b.get("stride", 1),
                b.get("padding", 0),
                b.get("dilation", 1),
            )
            return self.spatial(name, fname, x, value, nd, windows)
        if fname in ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
            b = bind_args(
                args,
                kwargs,
                (
                    "input",
                    "weight",
                    "bias",
                    "stride",
                    "padding",
                    "output_padding",
                    "groups",
                    "dilation",
                ),
            )
            nd = int(fname[-2])
            k = tuple(b["weight"].shape[2:])
            windows = [
                Transposed(kk, s, d, p)
                for kk, s, d, p in zip(
                    k,
                    axis_ints(b.get("stride", 1), nd),
                    axis_ints(b.get("dilation", 1), nd),
                    axis_ints(b.get("padding", 0), nd),
                    strict=True,
                )
            ]
            return self.spatial(name, fname, x, value, nd, windows)
        if (
            fname.startswith(("max_pool", "avg_pool", "lp_pool"))
            and fname[-2:] in ("1d", "2d", "3d")
        ) or (
            fname
            in ("max_pool1d_with_indices", "max_pool2d_with_indices", "max_pool3d_with_indices")
        ):
            nd = int(fname.split("_with")[0][-2])
            if fname.startswith("lp_pool"):
                b = bind_args(
                    args, kwargs, ("input", "norm_type", "kernel_size", "stride", "ceil_mode")
                )
                windows = _conv_windows(nd, b["kernel_size"], b.get("stride"), 0, 1)
            elif fname.startswith("avg"):
                b = bind_args(args, kwargs, ("input", "kernel_size", "stride", "padding"))
                windows = _conv_windows(
                    nd, b["kernel_size"], b.get("stride"), b.get("padding", 0), 1
                )
            else:
                b = bind_args(
                    args, kwargs, ("input", "kernel_size", "stride", "padding", "dilation")
                )
                windows = _conv_windows(
                    nd, b["kernel_size"], b.get("stride"), b.get("padding", 0), b.get("dilation", 1)
                )
            return self.spatial(name, fname, x, value, nd, windows)
        if fname.startswith(("adaptive_avg_pool", "adaptive_max_pool")):
            return self.adaptive(name, fname, x, value, int(fname.split("_with")[0][-2]))
        if fname == "linear":
            if _deps(states[1:]) or _deps(kwstates):
                raise _Unsupported("a linear layer whose weight depends on the input")
            return self.linear(name, fname, x, value)
        if fname in ("flatten",):
            b = bind_args(args, kwargs, ("input", "start_dim", "end_dim"))
            start = b.get("start_dim", 0)
            end = b.get("end_dim", -1)
            return self.layout_op(name, fname, x, value, self.flatten(x, b["input"], start, end))
        if fname in ("view", "reshape", "unflatten", "view_as", "reshape_as"):
            if (
                fname == "view"
                and len(args) == 2
                and not isinstance(args[1], (int, tuple, list, torch.Size))
            ):
                return self.elementwise(name, fname, states[:1], value)  # view(dtype)
            layout = _reshape(_need(x, fname).layout, args[0].shape, value.shape)
            return self.layout_op(name, fname, x, value, layout)
        if fname in (
            "permute",
            "transpose",
            "swapaxes",
            "swapdims",
            "movedim",
            "moveaxis",
            "t",
            "mT",
            "adjoint",
        ):
            return self.layout_op(name, fname, x, value, self.permute(fname, x, args, kwargs))
        if fname in ("squeeze", "unsqueeze", "squeeze_", "unsqueeze_"):
            return self.layout_op(name, fname, x, value, self.squeeze(x, args[0], value))
        if fname in ("expand", "expand_as", "broadcast_to", "repeat_interleave", "repeat", "tile"):
            if fname in ("repeat_interleave", "repeat", "tile"):
                raise _Unsupported(fname)
            return self.expand(name, fname, x, args[0], value)
        if fname in ("cat", "concat", "concatenate"):
            b = bind_args(args, kwargs, ("tensors", "dim"))
            return self.cat(
                name,
                fname,
                states[0] if states else kwstates.get("tensors"),
                b["tensors"],
                b.get("dim", 0),
                value,
            )
        if fname == "stack":
            b = bind_args(args, kwargs, ("tensors", "dim"))
            return self.stack(name, fname, states[0], b["tensors"], b.get("dim", 0), value)
        if fname in ("split", "chunk", "unbind", "tensor_split", "split_with_sizes"):
            return self.split(name, fname, x, args, kwargs, value)
        if fname in ("pad",):
            b = bind_args(args, kwargs, ("input", "pad", "mode", "value"))
            return self.pad(
                name, fname, x, value, tuple(b["pad"]), b.get("mode", "constant"), reverse=True
            )
        if fname in ("interpolate", "upsample", "upsample_nearest", "upsample_bilinear"):
            b = bind_args(
                args,
                kwargs,
                (
                    "input",
                    "size",
                    "scale_factor",
                    "mode",
                    "align_corners",
                    "recompute_scale_factor",
                    "antialias",
                ),
            )
            mode = {"upsample_nearest": "nearest", "upsample_bilinear": "bilinear"}.get(
                fname, b.get("mode", "nearest")
            )
            align = True if fname == "upsample_bilinear" else b.get("align_corners")
            if b.get("antialias"):
                raise _Unsupported("antialiased interpolation")
            return self.interpolate(
                name,
                fname,
                x,
                b["input"],
                value,
                b.get("scale_factor"),
                mode,
                align,
                b.get("recompute_scale_factor"),
            )
        if fname in ("pixel_shuffle", "pixel_unshuffle"):
            factor = args[1] if len(args) > 1 else next(iter(kwargs.values()))
            return self.pixel_shuffle(
                name, fname, x, value, int(factor), up=fname == "pixel_shuffle"
            )
        if fname in (
            "softmax",
            "log_softmax",
            "softmin",
            "cumsum",
            "cumprod",
            "logcumsumexp",
            "cummax",
            "cummin",
            "glu",
        ):
            b = bind_args(args, kwargs, ("input", "dim"))
            dim = b.get("dim")
            if dim is None:
                dim = -1 if fname == "glu" else None
            if dim is None:
                raise _Unsupported(f"{fname} without dim")
            if fname.startswith("cum"):
                if _dim_axis_of(x, dim) is not None:
                    raise _Unsupported(f"{fname} along a spatial axis")
                return self.elementwise(name, fname, states[:1], value)
            return self.along(name, fname, x, value, dim, halves=fname == "glu")
        if fname == "narrow":
            b = bind_args(args, kwargs, ("input", "dim", "start", "length"))
            index: list[Any] = [slice(None)] * b["input"].dim()
            dim = b["dim"] % b["input"].dim()
            start = int(b["start"]) % b["input"].shape[dim]
            index[dim] = slice(start, start + int(b["length"]))
            return self.index(name, fname, _need(x, fname), b["input"], tuple(index), value)
        if fname in ("flip", "roll", "fliplr", "flipud"):
            return self.reorder(name, fname, _need(x, fname), args, kwargs, value)
        if fname in ("max", "min") and len(args) >= 2 and _is_tensor(args[1]):
            return self.elementwise(name, fname, states, value)
        if fname in _REDUCTIONS:
            return self.reduce(name, fname, x, args, kwargs, value)
        if fname in self.elementwise_ops:
            if not _is_tensor(value):
                return None
            return self.elementwise(
                name, fname, [s for s in _flat(states) + _flat(kwstates)], value
            )
        raise _Unsupported(fname)

    # -- rule helpers ------------------------------------------------------------------
    def spatial(
        self, name: str, op: str, x: _T | None, value: Any, nd: int, windows: Sequence[Window]
    ) -> _T:
        """An op on the last ``nd`` dims (conv, pool, ...): the other dims keep their axes."""
        if x is None:
            raise _Unsupported(op)
        out = first_tensor(value)
        axes = _single_axes(x.layout[-nd:]) if nd else []
        per_axis: list[Window] = [IDENTITY] * self.b.ndim
        for axis, window in zip(axes, windows, strict=True):
            if axis is not None:
                per_axis[axis] = window
        layout = _relayout(x.layout, out.shape)
        b = self.b.add(name, op, layout, [(x, per_axis)], tuple(out.shape))
        return _wrap(value, b)

    def adaptive(self, name: str, op: str, x: _T | None, value: Any, nd: int) -> _T:
        if x is None:
            raise _Unsupported(op)
        out = first_tensor(value)
        axes = _single_axes(x.layout[-nd:])
        per_axis: list[Window] = [IDENTITY] * self.b.ndim
        kind = []
        for axis, d in zip(axes, range(len(x.layout) - nd, len(x.layout)), strict=True):
            if axis is None:
                continue
            n_in, n_out = x.extents[axis], int(out.shape[d])
            if n_out == 1:
                per_axis[axis] = Whole(n_in)
                kind.append("global")
            elif n_in % n_out == 0:
                per_axis[axis] = Conv(n_in // n_out, n_in // n_out)
            else:
                per_axis[axis] = Adaptive(n_in, n_out)
        layout = _relayout(x.layout, out.shape)
        b = self.b.add(name, op, layout, [(x, per_axis)], tuple(out.shape))
        return _wrap(value, b)

    def linear(self, name: str, op: str, x: _T | None, value: Any) -> _T:
        """A contraction over the last dim: the axes it carries are read whole."""
        if x is None:
            raise _Unsupported(op)
        per_axis: list[Window] = [IDENTITY] * self.b.ndim
        for axis in _axes_of(x.layout[-1]):
            per_axis[axis] = Whole(x.extents[axis])
        layout = (*x.layout[:-1], ((-1, int(value.shape[-1])),))
        return self.b.add(name, op, layout, [(x, per_axis)], tuple(value.shape))

    def along(
        self, name: str, op: str, x: _T | None, value: Any, dim: int, halves: bool = False
    ) -> _T:
        """An op that mixes one dim (softmax): whole along the axes that dim carries."""
        if x is None:
            raise _Unsupported(op)
        d = dim % len(x.layout)
        axes = _axes_of(x.layout[d])
        if halves and axes:
            raise _Unsupported(f"{op} along a spatial axis")
        per_axis: list[Window] = [IDENTITY] * self.b.ndim
        for axis in axes:
            per_axis[axis] = Whole(x.extents[axis])
        layout = list(_relayout(x.layout, value.shape))
        if axes:
            layout[d] = ((-1, int(value.shape[d])),)
            # the dim keeps its size, but no longer indexes positions of these axes
        return self.b.add(name, op, tuple(layout), [(x, per_axis)], tuple(value.shape))

    def reduce(self, name: str, op: str, x: _T | None, args: Any, kwargs: Any, value: Any) -> Any:
        if x is None:
            raise _Unsupported(op)
        b = bind_args(args, kwargs, ("input", "dim", "keepdim"))
        ndims = len(x.layout)
        dims = b.get("dim")
        if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0 and op != "sum"):
            dims_set = set(range(ndims))
        elif isinstance(dims, int):
            dims_set = {dims % ndims}
        else:
            dims_set = {int(d) % ndims for d in dims}
        keep = bool(b.get("keepdim", False))
        per_axis: list[Window] = [IDENTITY] * self.b.ndim
        layout: list[tuple[Atom, ...]] = []
        for d, atoms in enumerate(x.layout):
            if d in dims_set:
                for axis in _axes_of(atoms):
                    per_axis[axis] = Whole(x.extents[axis])
                if keep:
                    layout.append(((-1, 1),))
            else:
                layout.append(atoms)
        out = first_tensor(value)
        if tuple(_layout_shape(tuple(layout))) != tuple(out.shape):
            raise _Unsupported(op)
        t = self.b.add(name, op, tuple(layout), [(x, per_axis)], tuple(out.shape))
        return _wrap(value, t)

    def flatten(self, x: _T | None, tensor: Any, start: int, end: int) -> Layout:
        if x is None:
            raise _Unsupported("flatten")
        shape = tuple(tensor.shape)
        n = len(shape)
        if n == 0:
            return x.layout
        start %= n
        end %= n
        new = (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])
        return _reshape(x.layout, shape, new)

    def permute(self, fname: str, x: _T | None, args: Any, kwargs: Any) -> Layout:
        if x is None:
            raise _Unsupported(fname)
        n = len(x.layout)
        order = list(range(n))
        rest = list(args[1:]) + list(kwargs.values())
        if fname == "permute":
            dims = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
            order = [int(d) % n for d in dims]
        elif fname in ("transpose", "swapaxes", "swapdims"):
            i, j = int(rest[0]) % n, int(rest[1]) % n
            order[i], order[j] = order[j], order[i]
        elif fname in ("t", "mT", "adjoint"):
            if n >= 2:
                order[-1], order[-2] = order[-2], order[-1]
        else:  # movedim
            src = rest[0] if isinstance(rest[0], (list, tuple)) else [rest[0]]
            dst = rest[1] if isinstance(rest[1], (list, tuple)) else [rest[1]]
            src = [int(s) % n for s in src]
            dst = [int(d) % n for d in dst]
            remaining = [d for d in range(n) if d not in src]
            order = [-1] * n
            for s, d in zip(src, dst, strict=True):
                order[d] = s
            it = iter(remaining)
            order = [o if o >= 0 else next(it) for o in order]
        return tuple(x.layout[o] for o in order)

    def squeeze(self, x: _T | None, tensor: Any, value: Any) -> Layout:
        if x is None:
            raise _Unsupported("squeeze")
        return _reshape(x.layout, tensor.shape, value.shape)

    def expand(self, name: str, op: str, x: _T | None, tensor: Any, value: Any) -> _T:
        if x is None:
            raise _Unsupported(op)
        old = tuple(tensor.shape)
        new = tuple(value.shape)
        lead = len(new) - len(old)
        layout: list[tuple[Atom, ...]] = [((-1, int(n)),) for n in new[:lead]]
        for d, atoms in enumerate(x.layout):
            n_new = int(new[lead + d])
            layout.append(atoms if old[d] == n_new else ((-1, n_new),))
        t = _T(name, tuple(layout), _extents(tuple(layout), self.b.ndim))
        return self.b.add(name, op, t.layout, [(x, self.b.same_grid(x, t.extents))], new)

    def reorder(self, name: str, op: str, x: _T, args: Any, kwargs: Any, value: Any) -> _T:
        """flip/roll: the identity along dims without spatial axes (else measured)."""
        if op == "fliplr":
            dims: Any = [1]
        elif op == "flipud":
            dims = [0]
        else:
            b = bind_args(
                args, kwargs, ("input", "dims") if op == "flip" else ("input", "shifts", "dims")
            )
            dims = b.get("dims")
        if dims is None:
            raise _Unsupported(f"{op} of the flattened tensor")
        dims = [dims] if isinstance(dims, int) else list(dims)
        if any(_axes_of(x.layout[int(d) % len(x.layout)]) for d in dims):
            raise _Unsupported(f"{op} along a spatial axis")
        return self.b.add(name, op, x.layout, [(x, [IDENTITY] * self.b.ndim)], tuple(value.shape))

    def layout_op(self, name: str, op: str, x: _T | None, value: Any, layout: Layout) -> _T:
        if x is None:
            raise _Unsupported(op)
        extents = _extents(layout, self.b.ndim)
        if extents != x.extents:
            raise _Unsupported(op)
        return self.b.add(name, op, layout, [(x, [IDENTITY] * self.b.ndim)], tuple(value.shape))

    def elementwise(self, name: str, op: str, states: Any, value: Any) -> Any:
        """Broadcasting element-wise ops: every dim takes its axes from the inputs."""
        out = first_tensor(value)
        if out is None:
            return None
        shape = tuple(out.shape)
        inputs = [s for s in _flat(states) if isinstance(s, _T)]
        if (
            inputs
            and (len(inputs) == 1 or all(s.layout == inputs[0].layout for s in inputs[1:]))
            and _keeps_layout(inputs[0].layout, shape)
        ):
            # inputs of the same layout and shape (norms, activations, residual
            # additions): what merged() gives, without placing every dim
            layout = inputs[0].layout
            extents = _extents(layout, self.b.ndim)
            edges = [(s, self.b.same_grid(s, extents)) for s in _unique(inputs)]
            return _wrap(value, self.b.add(name, op, layout, edges, shape, extents=extents))
        placed = []
        for s in inputs:
            lead = len(shape) - len(s.layout)
            if lead < 0:
                raise _Unsupported(op)
            placed += [
                (lead + d, atoms)
                for d, atoms in enumerate(s.layout)
                if _layout_size(atoms) == shape[lead + d]
            ]
        return _wrap(value, self.merged(name, op, inputs, shape, placed))

    def merged(
        self,
        name: str,
        op: str,
        inputs: list[_T],
        shape: tuple[int, ...],
        placed: Sequence[tuple[int, tuple[Atom, ...]]],
    ) -> _T:
        """A node whose dims take the spatial axes ``placed`` on them by its inputs
        (which must agree); the inputs are read unit for unit, or broadcast."""
        layout: list[tuple[Atom, ...] | None] = [None] * len(shape)
        for d, atoms in placed:
            if not _axes_of(atoms):
                continue
            if layout[d] is not None and layout[d] != atoms:
                raise _Unsupported(f"{op} of tensors whose spatial axes disagree")
            layout[d] = atoms
        final = tuple(
            atoms if atoms is not None else ((-1, int(n)),)
            for atoms, n in zip(layout, shape, strict=True)
        )
        extents = _extents(final, self.b.ndim)
        edges = [(s, self.b.same_grid(s, extents)) for s in _unique(inputs)]
        return self.b.add(name, op, final, edges, shape)

    def cat(
        self, name: str, op: str, states: Any, tensors: Sequence[Any], dim: int, value: Any
    ) -> _T:
        shape = tuple(value.shape)
        d = dim % len(shape)
        inputs = [s for s in (states or []) if isinstance(s, _T)]
        if any(len(s.layout) != len(shape) or _axes_of(s.layout[d]) for s in inputs):
            raise _Unsupported("concatenation along a spatial axis")
        placed = [(k, atoms) for s in inputs for k, atoms in enumerate(s.layout) if k != d]
        return self.merged(name, op, inputs, shape, placed)

    def stack(
        self, name: str, op: str, states: Any, tensors: Sequence[Any], dim: int, value: Any
    ) -> _T:
        shape = tuple(value.shape)
        d = dim % len(shape)
        inputs = [s for s in states if isinstance(s, _T)]
        placed = [
            (k if k < d else k + 1, atoms) for s in inputs for k, atoms in enumerate(s.layout)
        ]
        return self.merged(name, op, inputs, shape, placed)

    def split(self, name: str, op: str, x: _T | None, args: Any, kwargs: Any, value: Any) -> Any:
        if x is None:
            raise _Unsupported(op)
        names = {
            "unbind": ("input", "dim"),
            "chunk": ("input", "chunks", "dim"),
            "tensor_split": ("input", "indices_or_sections", "dim"),
        }.get(op, ("input", "split_size_or_sections", "dim"))
        b = bind_args(args, kwargs, names)
        n = len(x.layout)
        d = int(b.get("dim", 0)) % n
        if _axes_of(x.layout[d]):
            raise _Unsupported(f"{op} along a spatial axis")
        pieces = list(value)
        t = self.b.add(
            name,
            op,
            x.layout,
            [(x, [IDENTITY] * self.b.ndim)],
            tuple(pieces[0].shape) if pieces else None,
        )
        result = []
        for piece in pieces:
            layout = (
                _relayout(x.layout, piece.shape)
                if piece.dim() == n
                else x.layout[:d] + x.layout[d + 1 :]
            )
            result.append(_T(t.node, layout, t.extents))
        return tuple(result)

    def pad(
        self,
        name: str,
        op: str,
        x: _T | None,
        value: Any,
        padding: Any,
        mode: str,
        reverse: bool = False,
    ) -> _T:
        if x is None:
            raise _Unsupported(op)
        pm = _pad_mode(mode)
        n = len(x.layout)
        pads = [
            int(p)
            for p in (padding if isinstance(padding, (list, tuple)) else (padding,) * (2 * (n - 2)))
        ]
        if not reverse and not isinstance(padding, (list, tuple)):
            reverse = True
        per_axis: list[Window] = [IDENTITY] * self.b.ndim
        for i in range(len(pads) // 2):
            d = n - 1 - i
            left = pads[2 * i]
            for axis in _single_axes((x.layout[d],)):
                if axis is not None:
                    per_axis[axis] = Conv(1, 1, 1, -left, pm)
        layout = _relayout(x.layout, value.shape)
        return self.b.add(name, op, layout, [(x, per_axis)], tuple(value.shape))

    def interpolate(
        self,
        name: str,
        op: str,
        x: _T | None,
        tensor: Any,
        value: Any,
        scale_factor: Any,
        mode: str,
        align_corners: Any,
        recompute: Any,
    ) -> _T:
        if x is None:
            raise _Unsupported(op)
        nd = tensor.dim() - 2
        axes = _single_axes(x.layout[-nd:])
        sizes_in = tuple(tensor.shape[-nd:])
        sizes_out = tuple(value.shape[-nd:])
        factors = None if scale_factor is None or recompute else _tuple_float(scale_factor, nd)
        per_axis: list[Window] = [IDENTITY] * self.b.ndim
        for i, axis in enumerate(axes):
            if axis is None:
                continue
            n_in, n_out = int(sizes_in[i]), int(sizes_out[i])
            per_axis[axis] = _resample_window(
                mode, n_in, n_out, None if factors is None else factors[i], bool(align_corners)
            )
        layout = _relayout(x.layout, value.shape)
        return self.b.add(name, f"{op} ({mode})", layout, [(x, per_axis)], tuple(value.shape))

    def pixel_shuffle(self, name: str, op: str, x: _T | None, value: Any, r: int, up: bool) -> _T:
        if x is None:
            raise _Unsupported(op)
        if _axes_of(x.layout[-3]):
            raise _Unsupported(f"{op} of a tensor whose channel dim is spatial")
        axes = _single_axes(x.layout[-2:])
        per_axis: list[Window] = [IDENTITY] * self.b.ndim
        for axis in axes:
            if axis is None:
                continue
            n_in = x.extents[axis]
            if up:
                per_axis[axis] = Resample(
                    n_in, n_in * r, ResampleMode.NEAREST, Fraction(1, r), pad_mode=PadMode.ZEROS
                )
            else:
                per_axis[axis] = Conv(r, r)
        layout = _relayout(x.layout, value.shape)
        return self.b.add(name, op, layout, [(x, per_axis)], tuple(value.shape))

    def getitem(self, node: Any, args: Any, states: Any, value: Any) -> Any:
        container, index = args[0], args[1]
        state = states[0]
        if isinstance(state, (tuple, list)):
            if isinstance(index, int):
                return state[index]
            if isinstance(index, slice):
                return tuple(state[index])
            raise _Unsupported("getitem")
        if not isinstance(state, _T):
            return None
        if not _is_tensor(container):
            return None
        if _deps(states[1:]):
            raise _Unsupported("indexing with a tensor that depends on the input")
        return self.index(node.name, "getitem", state, container, index, value)

    def index(self, name: str, op: str, x: _T, tensor: Any, index: Any, value: Any) -> _T:
        torch = self.torch
        items = list(index) if isinstance(index, tuple) else [index]
        n = tensor.dim()
        used = sum(1 for it in items if it is not None and it is not Ellipsis)
        if any(it is Ellipsis for it in items):
            e = items.index(Ellipsis)
            items = items[:e] + [slice(None)] * (n - used) + items[e + 1 :]
        items += [slice(None)] * (n - sum(1 for it in items if it is not None))
        per_axis: list[Window] = [IDENTITY] * self.b.ndim
        layout: list[tuple[Atom, ...]] = []
        d = 0
        for it in items:
            if it is None:
                layout.append(((-1, 1),))
                continue
            atoms = x.layout[d]
            size = int(tensor.shape[d])
            axes = _axes_of(atoms)
            if isinstance(it, (int, np.integer, torch.SymInt)):
                i = int(it) % size
                if axes:
                    (axis,) = _single_axes((atoms,))
                    assert axis is not None
                    per_axis[axis] = Conv(1, 0, 1, i)
            elif isinstance(it, slice):
                start, stop, step = it.indices(size)
                length = len(range(start, stop, step))
                if axes:
                    (axis,) = _single_axes((atoms,))
                    assert axis is not None
                    if step < 0:
                        raise _Unsupported("a reversed slice of a spatial axis")
                    per_axis[axis] = Conv(1, step, 1, start)
                    layout.append(((axis, length),))
                else:
                    layout.append(((-1, length),))
            else:
                if axes:
                    raise _Unsupported("advanced indexing of a spatial axis")
                raise _Unsupported("advanced indexing")
            d += 1
        final = tuple(layout)
        if _layout_shape(final) != tuple(value.shape):
            raise _Unsupported("getitem")
        return self.b.add(name, op, final, [(x, per_axis)], tuple(value.shape))


def _need(x: Any, op: str) -> _T:
    """The tensor state an op works on; ops on constants only never get here."""
    if not isinstance(x, _T):
        raise _Unsupported(f"{op} whose first input does not depend on the model input")
    return x


def _dim_axis_of(x: _T | None, dim: int) -> int | None:
    if x is None:
        return None
    axes = _axes_of(x.layout[dim % len(x.layout)])
    return axes[0] if axes else None


def _tuple_float(value: Any, n: int) -> tuple[float, ...]:
    if isinstance(value, (list, tuple)):
        values = tuple(float(v) for v in value)
        return values * n if len(values) == 1 else values
    return (float(value),) * n


def _resample_window(mode: str, n_in: int, n_out: int, factor: float | None, align: bool) -> Window:
    if mode == "area":
        if n_in % n_out == 0:
            return Conv(n_in // n_out, n_in // n_out)
        return Adaptive(n_in, n_out)
    if mode in ("nearest", "nearest-exact"):
        kind = ResampleMode.NEAREST if mode == "nearest" else ResampleMode.NEAREST_EXACT
        if n_in == n_out and mode == "nearest":
            return IDENTITY
        if mode == "nearest" and n_out == 2 * n_in:
            ratio = Fraction(1, 2)
        else:
            ratio = _float32_ratio(n_in, n_out, factor)
        return Resample(n_in, n_out, kind, ratio)
    if mode in ("linear", "bilinear", "trilinear", "bicubic"):
        kind = ResampleMode.CUBIC if mode == "bicubic" else ResampleMode.LINEAR
        if align:
            ratio = Fraction(n_in - 1, n_out - 1) if n_out > 1 else Fraction(0)
        else:
            ratio = _float32_ratio(n_in, n_out, factor)
        return Resample(n_in, n_out, kind, ratio, align)
    raise _Unsupported(f"interpolation mode {mode!r}")


def _float32_ratio(n_in: int, n_out: int, factor: float | None) -> Fraction:
    """PyTorch's source step per output unit, rounded to float32 as its kernels do."""
    if factor is not None and factor > 0:
        return Fraction(float(np.float32(1.0 / factor)))
    return Fraction(float(np.float32(n_in) / np.float32(n_out)))


def _wrap(value: Any, state: _T) -> Any:
    """The state of an op's value: the tensor's, or one per element of a tuple output."""
    if isinstance(value, (tuple, list)):
        return tuple(state for _ in value)
    return state


def _flat(states: Any) -> list[Any]:
    out: list[Any] = []
    if isinstance(states, (list, tuple)):
        for s in states:
            out.extend(_flat(s))
    elif isinstance(states, dict):
        for s in states.values():
            out.extend(_flat(s))
    else:
        out.append(states)
    return out


def _unique(states: Sequence[_T]) -> list[_T]:
    seen: dict[str, _T] = {}
    for s in states:
        seen.setdefault(s.node, s)
    return list(seen.values())


def _keeps_layout(layout: Layout, shape: tuple[int, ...]) -> bool:
    """Whether an element-wise op of output ``shape`` on inputs of ``layout`` keeps it.

    True when every dim has the size of its atoms and is a spatial dim or a single
    non-spatial atom: the layout that :meth:`_Rules.merged` builds from such inputs.
    """
    if len(layout) != len(shape):
        return False
    for atoms, n in zip(layout, shape, strict=True):
        if len(atoms) == 1:
            if atoms[0][1] != n:
                return False
        elif not _axes_of(atoms) or _layout_size(atoms) != n:
            return False
    return True


def _layout_size(atoms: tuple[Atom, ...]) -> int:
    return math.prod(n for _, n in atoms)


def _layout_shape(layout: Layout) -> tuple[int, ...]:
    return tuple(_layout_size(atoms) for atoms in layout)


def _relayout(layout: Layout, shape: Sequence[int]) -> Layout:
    """The same axes per dim with new sizes (conv outputs); non-spatial dims are resized."""
    if len(layout) != len(shape):
        raise _Unsupported("an op that changes the number of dims")
    out: list[tuple[Atom, ...]] = []
    for atoms, n in zip(layout, shape, strict=True):
        axes = _axes_of(atoms)
        if not axes:
            out.append(((-1, int(n)),))
        elif len(atoms) == 1:
            out.append(((axes[0], int(n)),))
        elif _layout_size(atoms) == int(n):
            out.append(atoms)
        else:
            raise _Unsupported("a packed spatial dim that changes size")
    return tuple(out)


# -- tracing and interpreting -----------------------------------------------------------


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (the analysis allocates many small objects)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Run ``model`` in eval mode and restore every module's own mode afterwards.

    A model whose modules are all in eval mode already is left as it is (``eval()``
    would only set the same flags again, as the restoring does, module by module).
    """
    modes = [(m, m.training) for m in model.modules()]
    try:
        if any(mode for _, mode in modes):
            model.eval()
        yield
    finally:
        for m, mode in modes:
            if m.training != mode:
                m.training = mode


def _trace(model: Any) -> tuple[Any, Any, list[str]]:
    """Symbolically trace ``model``: ``(root, graph, opaque)``.

    Submodules that cannot be traced become opaque leaves (``opaque``).  The root is a
    shallow copy of the model, so that the tensor constants torch.fx attaches to it do
    not land on the user's model; the submodules are the model's own.
    """
    torch = require_torch()
    fx = torch.fx
    opaque: list[str] = []

    plain = frozenset({int, float, bool, str, type(None)})
    module_type = torch.nn.Module

    class Tracer(fx.Tracer):  # type: ignore[name-defined]
        def is_leaf_module(self, m: Any, qualname: str) -> bool:
            return qualname in opaque or bool(super().is_leaf_module(m, qualname))

        def create_arg(self, a: Any) -> Any:
            # what fx.Tracer.create_arg does for these exact types, without its chain
            # of isinstance checks (most arguments are proxies, tuples and empty kwargs)
            kind = type(a)
            if kind is fx.Proxy:
                return a.node
            if kind in plain:
                return a
            if kind is tuple:
                return tuple(self.create_arg(item) for item in a)
            if kind is dict and not a:
                return {}
            return super().create_arg(a)

        def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: Any) -> Any:
            # fx.Tracer.getattr proxies parameters and tensors and returns anything
            # else as is: submodules, mostly
            if attr_val is None or isinstance(attr_val, module_type):
                return attr_val
            return super().getattr(attr, attr_val, parameter_proxy_cache)

    last: Exception | None = None
    root = copy.copy(model)
    concrete = _optional_args(model)
    for _ in range(_MAX_RETRACES):
        tracer = Tracer()
        try:
            graph = tracer.trace(root, concrete_args=concrete or None)
        except Exception as exc:
            last = exc
            stack = [name for name, _ in tracer.module_stack.values() if name]
            if not stack or stack[-1] in opaque:
                break
            opaque.append(stack[-1])
            continue
        return tracer.root, graph, opaque
    assert last is not None
    raise _Untraceable(f"{type(last).__name__}: {_one_line(last)}") from last


class _Untraceable(Exception):
    pass


def _optional_args(model: Any) -> dict[str, Any]:
    """The arguments of ``forward`` after the input that have a default value.

    They are traced with that value (``forward(x, mask=None)`` takes the ``mask is
    None`` branch), as rfmap calls the model with the input alone.
    """
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {
        p.name: p.default
        for p in params[1:]
        if p.kind in kinds and p.default is not inspect.Parameter.empty
    }


@dataclass
class TracedModel:
    """A model turned into an :class:`~rfmap.receptive.RFGraph`.

    ``aliases`` maps fx node names and module names to graph nodes, ``measured`` lists
    the nodes whose windows were measured, ``opaque`` the submodules that could not be
    traced (and were measured as one operation).
    """

    graph: RFGraph
    aliases: dict[str, str]
    measured: list[str]
    opaque: list[str]
    notes: list[str]

    def resolve(self, layer: str | None) -> str:
        """The graph node of ``layer`` (fx node or module name; default: the output)."""
        if layer is None:
            return self.graph.output
        if layer in self.graph.nodes:
            return layer
        if layer in self.aliases:
            return self.aliases[layer]
        close = difflib.get_close_matches(layer, list(self.aliases) + list(self.graph.nodes), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise InvalidSpecError(
            f"layer {layer!r} is neither a node nor a module of the traced model{hint}"
        )


def trace_model(
    model: Any, input_size: Sequence[int], *, method: Method | str = Method.AUTO
) -> TracedModel:
    """Trace ``model`` on an input of ``input_size`` (``(C, *spatial)``) into a graph.

    Raises :class:`~rfmap.errors.UnsupportedLayerError` for an op that cannot be
    derived (with ``method='analytic'``) or measured, and
    :class:`~rfmap.errors.ModelError` when the model cannot be traced or run.
    """
    torch = require_torch()
    method = _method(method)
    size = parse_input_size(input_size)
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    lazy = torch.nn.parameter.is_lazy
    # the parameters and buffers of every module (what parameters() and buffers() list,
    # without their generators)
    if any(
        lazy(t)
        for m in model.modules()
        for own in (m._parameters, m._buffers)
        for t in own.values()
    ):
        model = copy.deepcopy(model)  # running it would initialise the user's lazy modules
    with _eval_mode(model):
        try:
            root, graph, opaque = _trace(model)
        except _Untraceable as exc:
            raise ModelError(f"torch.fx cannot trace the model: {exc}") from exc
        return _interpret(root, graph, size, opaque, method)


def _pool_size(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    """PyTorch's pooling output size (``pooling_output_shape``)."""
    span = d * (k - 1) + 1
    if ceil:
        out = -(-(n + 2 * p - span) // s) + 1
        if (out - 1) * s >= n + p:
            out -= 1
        return out
    return (n + 2 * p - span) // s + 1


def _leaf_shape(m: Any, args: Any, kwargs: Any) -> tuple[int, ...] | None:
    """The output shape of a standard leaf module from its documented formula.

    Saves running (a meta copy of) the module during shape propagation.  None when the
    module or the call is not a plain case, so that the module itself runs (and raises
    PyTorch's own error on bad input).
    """
    torch = require_torch()
    nn = torch.nn
    x = args[0]
    if kwargs or not isinstance(x, torch.Tensor):
        return None
    shape = tuple(int(n) for n in x.shape)
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and not isinstance(
        m.weight, nn.parameter.UninitializedParameter
    ):
        nd = m.weight.dim() - 2
        if (
            len(shape) not in (nd + 1, nd + 2)
            or shape[-nd - 1] != m.in_channels
            or m.padding_mode != "zeros"  # reflect/circular: F.pad checks the size
            or tuple(m.weight.shape) != (m.out_channels, m.in_channels // m.groups, *m.kernel_size)
            or (m.bias is not None and tuple(m.bias.shape) != (m.out_channels,))
            or min(*m.stride, *m.dilation) < 1
        ):
            return None
        if m.padding == "same":
            out = shape[-nd:]
        else:
            pad = (0,) * nd if m.padding == "valid" else axis_ints(m.padding, nd)
            if min(pad) < 0:
                return None
            out = tuple(
                (n + 2 * p - d * (k - 1) - 1) // s + 1
                for n, k, s, p, d in zip(
                    shape[-nd:], m.kernel_size, m.stride, pad, m.dilation, strict=True
                )
            )
        channels = m.out_channels
    elif isinstance(
        m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
    ):
        if getattr(m, "return_indices", False):
            return None
        nd = int(type(m).__name__[-2])
        if len(shape) not in (nd + 1, nd + 2) or min(shape[-nd - 1 :]) < 1:
            return None
        k, s = axis_ints(m.kernel_size, nd), axis_ints(m.stride, nd, m.kernel_size)
        p = axis_ints(m.padding, nd)
        d = axis_ints(getattr(m, "dilation", 1), nd)
        if min(*k, *s, *d) < 1 or any(pp < 0 or pp > kk // 2 for pp, kk in zip(p, k, strict=True)):
            return None
        if isinstance(m, nn.AvgPool3d) and any(n < kk for n, kk in zip(shape[-3:], k, strict=True)):
            return None  # PyTorch's avg_pool3d wants the unpadded input to fit the kernel
        out = tuple(
            _pool_size(n, kk, ss, pp, dd, m.ceil_mode)
            for n, kk, ss, pp, dd in zip(shape[-nd:], k, s, p, d, strict=True)
        )
        channels = shape[-nd - 1]
    elif isinstance(
        m,
        (
            nn.AdaptiveAvgPool1d,
            nn.AdaptiveAvgPool2d,
            nn.AdaptiveAvgPool3d,
            nn.AdaptiveMaxPool1d,
            nn.AdaptiveMaxPool2d,
            nn.AdaptiveMaxPool3d,
        ),
    ):
        if getattr(m, "return_indices", False):
            return None
        nd = int(type(m).__name__[-2])
        size = m.output_size
        out = (size,) * nd if type(size) is int else tuple(size)
        if (
            len(shape) not in (nd + 1, nd + 2)
            or min(shape[-nd - 1 :]) < 1
            or len(out) != nd
            or any(type(n) is not int for n in out)  # None: the input's size
        ):
            return None
        channels = shape[-nd - 1]
    elif isinstance(m, nn.Linear) and not isinstance(m.weight, nn.parameter.UninitializedParameter):
        if (
            not shape
            or shape[-1] != m.in_features
            or tuple(m.weight.shape) != (m.out_features, m.in_features)
            or (m.bias is not None and tuple(m.bias.shape) != (m.out_features,))
        ):
            return None
        return (*shape[:-1], m.out_features)
    else:
        return None
    if min(out) < 1:
        return None
    return (*shape[: -nd - 1], channels, *out)


def _to_meta(value: Any, memo: dict[int, Any]) -> Any:
    """A meta tensor in place of a real one (parameters stay parameters); others as is."""
    torch = require_torch()
    if not isinstance(value, torch.Tensor):
        return value
    if id(value) not in memo:
        empty = torch.empty_like(value, device="meta")
        if isinstance(value, torch.nn.Parameter):
            empty = torch.nn.Parameter(empty, value.requires_grad)
        memo[id(value)] = empty
    return memo[id(value)]


class _MetaFailed(Exception):
    """Shape propagation on meta tensors failed; run the real model instead."""


def _interpret(
    gm: Any, graph: Any, size: tuple[int, ...], opaque: list[str], method: Method
) -> TracedModel:
    """Run ``graph`` (traced from ``gm``) once, on meta tensors when possible, and build
    the RFGraph."""
    torch = require_torch()
    param = next(iter(gm.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.empty((1, *size), dtype=dtype, device="meta")
    try:
        return _run(gm, graph, x, size, opaque, method, on_meta=True)
    except _MetaFailed:
        pass
    device = param.device if param is not None else torch.device("cpu")
    generator = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn((1, *size), generator=generator).to(device=device, dtype=dtype)
    return _run(gm, graph, x, size, opaque, method, on_meta=False)


def _run(
    gm: Any,
    graph: Any,
    x: Any,
    size: tuple[int, ...],
    opaque: list[str],
    method: Method,
    on_meta: bool,
) -> TracedModel:
    torch = require_torch()
    ndim = len(size) - 1
    builder = _Builder(ndim)
    rules = _Rules(builder, gm)
    aliases: dict[str, str] = {}
    states: dict[Any, Any] = {}
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if not placeholders:
        raise ModelError("the model's forward takes no input")
    required = [str(n.target) for n in placeholders[1:] if not n.args]
    required = [name for name in required if not name.startswith("*")]
    if required:
        raise ModelError(
            f"the model's forward needs more inputs than one tensor ({', '.join(required)} "
            "too); rfmap feeds it the input alone: wrap the model so that it takes one tensor"
        )
    module_nodes: dict[str, str] = {}

    memo: dict[int, Any] = {}
    meta_modules: dict[str, Any] = {}
    same_shape = (*rules.identity_modules, *rules.activation_modules)
    same_types = rules.elementwise_types  # the same classes: a faster test first

    map_arg = torch.fx.node.map_arg
    fetched = rules.modules  # each call_module node's module, fetched once

    class Interp(torch.fx.Interpreter):  # type: ignore[name-defined]
        """On meta tensors: leaf modules run as meta copies (no data is copied), and
        modules that keep the shape (norms, activations, dropout) are skipped."""

        def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
            # the tracer named the module after named_modules(), as the interpreter's
            # submodules are: the very module traced (fetch_attr walks the same path)
            module = self.submodules.get(target)
            if module is None:
                module = self.fetch_attr(target)
            fetched[target] = module
            if not on_meta:
                return module(*args, **kwargs)
            if (
                (type(module) in same_types or isinstance(module, same_shape))
                and len(args) == 1
                and not kwargs
            ):
                return args[0]
            shape = _leaf_shape(module, args, kwargs) if len(args) == 1 else None
            if shape is not None:
                return torch.empty(shape, dtype=args[0].dtype, device="meta")
            if target not in meta_modules:
                own = {id(t): _to_meta(t, memo) for t in (*module.parameters(), *module.buffers())}
                meta_modules[target] = copy.deepcopy(module, own)
            return meta_modules[target](*args, **kwargs)

        def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
            if on_meta and target in _META_BROADCAST and not kwargs and len(args) == 2:
                tensors = [a for a in args if isinstance(a, torch.Tensor)]
                if tensors and all(t.is_meta for t in tensors):
                    if target in (operator.iadd, operator.imul) and isinstance(
                        args[0], torch.Tensor
                    ):
                        return args[0]
                    shapes = [t.shape for t in tensors]
                    if all(s == shapes[0] for s in shapes):
                        shape = shapes[0]  # what broadcast_shapes gives, without its checks
                    else:
                        shape = torch.broadcast_shapes(*shapes)
                    dtype = torch.result_type(*args)
                    return torch.empty(shape, dtype=dtype, device="meta")
            return super().call_function(target, args, kwargs)

        def get_attr(self, target: Any, args: Any, kwargs: Any) -> Any:
            value = super().get_attr(target, args, kwargs)
            return _to_meta(value, memo) if on_meta else value

        def run_node(self, n: Any) -> Any:
            op = n.op
            if op in ("placeholder", "get_attr", "output"):
                value = super().run_node(n)
                if op == "placeholder" and n is placeholders[0]:
                    layout = _plain(value.shape, [None, None, *range(ndim)])
                    states[n] = builder.add(n.name, "input", layout, [], tuple(value.shape))
                else:
                    states[n] = None
                return value
            env = self.env.__getitem__  # the graph is in topological order
            args = map_arg(n.args, env)
            kwargs = map_arg(n.kwargs, env) if n.kwargs else {}
            value = getattr(self, op)(n.target, args, kwargs)
            args_states = map_arg(n.args, states.get)
            kw_states = map_arg(n.kwargs, states.get) if n.kwargs else {}
            try:
                state = rules.apply(n, args, kwargs, args_states, kw_states, value)
            except _Unsupported as exc:
                state = _measure_node(
                    n, args, kwargs, args_states, kw_states, value, builder, exc, method, gm, opaque
                )
            states[n] = state
            if isinstance(state, _T):
                node = state.node
                for key in n.meta.get("nn_module_stack", {}).values():
                    module_nodes[key[0] if isinstance(key, tuple) else key] = node
                if op == "call_module":
                    module_nodes[n.target] = node
                if node != n.name:
                    aliases[n.name] = node
            elif isinstance(state, tuple) and state and isinstance(state[0], _T):
                aliases[n.name] = state[0].node
            return value

    interp = Interp(gm, graph=graph)
    try:
        with torch.no_grad():
            out = interp.run(x)
    except (RFMapError, _GiveUp):
        raise
    except Exception as exc:
        if on_meta:
            raise _MetaFailed from exc
        raise ModelError(
            f"the model's forward failed on input size {list(size)}: "
            f"{type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    del out
    output_node = next(n for n in graph.nodes if n.op == "output")
    outputs = [
        s.node for s in _deps(torch.fx.node.map_arg(output_node.args, lambda a: states.get(a)))
    ]
    outputs = list(dict.fromkeys(outputs))
    if not outputs:
        raise ModelError("the model's output does not depend on its input")
    for qualname, node in module_nodes.items():
        if qualname and qualname not in builder.names:
            aliases.setdefault(qualname, node)
    graph = RFGraph(builder.nodes, outputs)
    notes = list(builder.notes)
    return TracedModel(graph, aliases, list(builder.measured), list(opaque), notes)


def _measure_node(
    n: Any,
    args: Any,
    kwargs: Any,
    args_states: Any,
    kw_states: Any,
    value: Any,
    builder: _Builder,
    reason: Exception,
    method: Method,
    gm: Any,
    opaque: list[str],
) -> Any:
    """Measure an op that the rules cannot express, or give up on the whole model."""
    torch = require_torch()
    what = _describe(n, gm)
    if method is Method.ANALYTIC:
        raise UnsupportedLayerError(
            f"cannot derive the receptive field of {what} (node {n.name!r}: {reason}); "
            "use method='auto' to measure it with the gradient"
        )
    from .measure import linearised_copy, measure_windows

    flat_args = [_realise(a) for a in list(args) + list(kwargs.values())]
    flat_states = list(args_states) + list(kw_states.values())
    dep = [i for i, s in enumerate(flat_states) if isinstance(s, _T)]
    out = first_tensor(value)
    if (
        not dep
        or out is None
        or any(isinstance(s, (tuple, list)) and _deps(s) for s in flat_states)
    ):
        raise _GiveUp(f"{what} (node {n.name!r}: {reason})")
    ins = [flat_states[i] for i in dep]
    ref = ins[0]
    if out.dim() != len(ref.layout):
        raise _GiveUp(f"{what} changes the number of dims (node {n.name!r})")
    try:
        axes = _single_axes(ref.layout)
        in_dims = [
            {a: d for d, a in enumerate(_single_axes(s.layout)) if a is not None} for s in ins
        ]
    except _Unsupported as exc:
        raise _GiveUp(f"{what} (node {n.name!r}: {exc})") from exc
    out_dims = {a: d for d, a in enumerate(axes) if a is not None}
    if n.op == "call_module":
        fn = linearised_copy(gm.get_submodule(n.target))
    elif n.op == "call_method":

        def fn(*a: Any) -> Any:
            return getattr(a[0], n.target)(*a[1:])
    else:
        fn = n.target
    n_args = len(args)

    def call(*values: Any) -> Any:
        return fn(*values[:n_args], **dict(zip(kwargs, values[n_args:], strict=True)))

    try:
        with torch.enable_grad():
            measured = measure_windows(call, flat_args, dep, in_dims, out_dims)
    except RFMapError:
        raise
    except Exception as exc:
        raise _GiveUp(f"{what} (node {n.name!r}): measuring it failed: {_one_line(exc)}") from exc
    if measured is None:
        raise _GiveUp(f"{what} (node {n.name!r}) cannot be measured as one op")
    layout = _relayout(ref.layout, out.shape)
    extents = _extents(layout, builder.ndim)
    edges = []
    for s, windows in zip(ins, measured, strict=True):
        per_axis: list[Window] = []
        for a in range(builder.ndim):
            if a in windows:
                per_axis.append(Table(windows[a]))
            elif s.extents[a] == extents[a]:
                per_axis.append(IDENTITY)
            else:
                per_axis.append(BROADCAST)
        edges.append((s, per_axis))
    state = builder.add(
        n.name,
        f"{_short(n, gm)} (measured)",
        layout,
        _unique_edges(edges),
        tuple(out.shape),
        measured=True,
    )
    if n.op == "call_module" and n.target in opaque:
        why = "cannot be traced by torch.fx"
    else:
        why = "is not supported"
    builder.notes.append(f"{what} (node {n.name!r}) {why}: measured with the gradient")
    return _wrap(value, state)


def _realise(value: Any) -> Any:
    """A real tensor (ones) in place of a meta tensor, so that an op can be run."""
    torch = require_torch()
    if isinstance(value, torch.Tensor) and value.is_meta:
        return torch.ones(value.shape, dtype=value.dtype)
    return value


def _unique_edges(edges: list[tuple[_T, list[Window]]]) -> list[tuple[_T, list[Window]]]:
    seen: dict[str, tuple[_T, list[Window]]] = {}
    for s, w in edges:
        seen.setdefault(s.node, (s, w))
    return list(seen.values())


class _GiveUp(Exception):
    """The model has an op that can be neither derived nor measured on its own."""


def _short(n: Any, gm: Any) -> str:
    if n.op == "call_module":
        return type(gm.get_submodule(n.target)).__name__
    if n.op == "call_method":
        return str(n.target)
    return getattr(n.target, "__name__", str(n.target))


def _describe(n: Any, gm: Any) -> str:
    if n.op == "call_module":
        return f"module {n.target!r} ({type(gm.get_submodule(n.target)).__name__})"
    if n.op == "call_method":
        return f"method .{n.target}()"
    return f"function {getattr(n.target, '__name__', str(n.target))}()"


# -- the public entry point -------------------------------------------------------------


def model_rf(
    model: Any,
    input_size: Sequence[int],
    layer: str | None = None,
    *,
    method: Method | str = Method.AUTO,
) -> ReceptiveField:
    """Receptive field of ``model`` (or of one intermediate ``layer``) per spatial axis.

    Parameters
    ----------
    model
        A ``torch.nn.Module``.  It is run once in eval mode (modes are restored) and
        never modified.
    input_size
        ``(C, H, W)`` for 2D models, ``(C, L)`` for 1D, ``(C, D, H, W)`` for 3D
        (channels first, no batch).
    layer
        A torch.fx node name (``"layer1_0_conv1"``) or a module name (``"layer1.0"``,
        ``"features"``); default: the model output (the first one, if several).
    method
        ``"auto"`` (derive, and measure only what cannot be derived), ``"analytic"``
        (derive or raise :class:`~rfmap.errors.UnsupportedLayerError`) or
        ``"measure"`` (the gradient on the whole model); see :class:`Method`.

    >>> import torch
    >>> net = torch.nn.Sequential(
    ...     torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    ...     torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2))
    >>> r = model_rf(net, (3, 32, 32))
    >>> r.receptive_field, r.stride, r.padding, r.is_global, r.exact
    ((12, 12), (2, 2), (5, 5), False, True)
    >>> r.input_box((0, 3)), r.input_box((0, 3), clip=False)
    (((0, 7), (1, 13)), ((-5, 7), (1, 13)))
    """
    require_torch()
    method = _method(method)
    size = parse_input_size(input_size)
    if method is Method.MEASURE:
        from .measure import measure_model_rf

        with _eval_mode(model):
            return measure_model_rf(model, size, layer)
    try:
        with _gc_paused():
            traced = trace_model(model, size, method=method)
            return graph_rf(traced.graph, traced.resolve(layer), notes=traced.notes)
    except (ModelError, _GiveUp) as exc:
        if method is Method.ANALYTIC or not _fallback_ok(exc):
            raise
        from .measure import measure_model_rf

        reason = f"measured as a whole: {exc}"
        return measure_model_rf(model, size, layer, reason=reason)


def _method(method: Method | str) -> Method:
    try:
        return Method(method)
    except ValueError:
        choices = ", ".join(m.value for m in Method)
        raise InvalidSpecError(f"method must be one of {choices}, got {method!r}") from None


def _fallback_ok(exc: Exception) -> bool:
    """Whether the whole-model gradient fallback applies (not for a forward that fails)."""
    return isinstance(exc, _GiveUp) or "cannot trace" in str(exc)

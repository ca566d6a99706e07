"""Receptive fields measured with the gradient: the seed notebook's method, made robust.

:func:`measure_rf` backpropagates one output unit of a real model to its input and
reports where the gradient is non-zero.  A plain gradient can miss input positions:
ReLUs that are off, ReLU6 that saturate, max-pools that pass one element per window,
normalisations and weights whose contributions cancel.  So the model is measured on a
*linearised copy*: float64, every floating parameter positive (``1/fan_in`` for
weights, 1 for the rest), activations, dropout and normalisations replaced by the
identity, max-pools by window sums with the same geometry (so every window element is
counted), and a positive input.  All Jacobian entries are then sums of products of
positive numbers, so a position has a non-zero gradient exactly when some path links
it to the unit.  The user's model is never modified (the copy is a deepcopy).

Attention is the one place where the linearised copy keeps a non-linearity: a softmax
(``softmax``, ``scaled_dot_product_attention``) is computed for real, except that a
weight below ``e**-50`` times the largest of its row counts as zero -- the masks of
shifted windows add ``-100`` (not ``-inf``), and the float64 gradient of a masked token is
tiny but not zero; following the mask's intent, masked tokens are not read.  So that
real attention weights never come near that threshold, normalisations divide their
input by its (constant) root mean square instead of being the plain identity: the
values stay of order one, and the gradient is still positive.  Only tensors that depend
on the input are linearised: constants (masks, relative position tables) are computed
as the model computes them, and the copy keeps the values of non-persistent buffers
(derived constants such as attention masks).

Outputs may be channels-first ``(N, C, *grid)``, channels-last ``(N, *grid, C)`` or
tokens ``(N, T, C)``: :func:`spatial_dims` finds the dims of the spatial grid by size.

This is the independent check of :mod:`rfmap.trace`, and its fallback for operations
and models that cannot be analysed.  Needs PyTorch.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidSpecError, ModelError, RFMapError
from .gradient import require_torch
from .loading import parse_input_size
from .receptive import (
    ReceptiveField,
    _normalise_unit,
    measured_receptive_field,
)

__all__ = [
    "LINEARISED_OPS",
    "MeasuredRF",
    "linearised",
    "linearised_copy",
    "measure_boxes",
    "measure_model_rf",
    "measure_rf",
    "measure_windows",
    "spatial_dims",
    "unit_index",
]

#: The input value fed to linearised copies (any positive value works).
_INPUT_VALUE = 1.0


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Functions, methods and modules' functional forms that a linearised forward pass
#: replaces by the identity on tensors that depend on the input: activations, dropout
#: and normalisations (these divided by a constant scale, see ``_NORMS``).
LINEARISED_OPS = _words(
    """
    relu relu_ relu6 hardtanh hardtanh_ leaky_relu leaky_relu_ elu elu_ selu selu_ celu
    celu_ gelu silu silu_ mish hardswish hardswish_ hardsigmoid hardsigmoid_ sigmoid
    sigmoid_ tanh tanh_ softplus softsign prelu rrelu rrelu_ logsigmoid threshold
    threshold_ clamp clamp_ clip clip_ clamp_min clamp_min_ clamp_max clamp_max_ dropout
    dropout_ dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout batch_norm
    layer_norm group_norm instance_norm local_response_norm rms_norm normalize tanhshrink
    hardshrink softshrink
    """
)


#: Normalisations: in a linearised forward they divide their input by its root mean
#: square (a constant for the gradient), so values stay of order one.
_NORMS = _words("batch_norm layer_norm group_norm instance_norm rms_norm normalize")

#: A softmax weight below ``e**-_MASKED`` times the largest weight of its row is zero in
#: a linearised forward (an additive mask of -100 leaves weights of ``e**-100``).
_MASKED = 50.0


# -- linearisation ----------------------------------------------------------------------


def per_axis(value: Any, n: int, default: Any = None) -> tuple[int, ...]:
    """An int or a per-axis sequence (length 1 broadcasts) as ``n`` ints.

    >>> per_axis(3, 2), per_axis([2], 3), per_axis(None, 2, default=(1, 4))
    ((3, 3), (2, 2, 2), (1, 4))
    """
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        value = default
    if isinstance(value, (list, tuple)):
        values = tuple(int(v) for v in value)
        return values * n if len(values) == 1 else values
    return (int(value),) * n


def _pool_geometry(
    nd: int, kernel: Any, stride: Any, padding: Any, dilation: Any
) -> tuple[tuple[int, ...], ...]:
    k = per_axis(kernel, nd)
    return k, per_axis(stride, nd, k), per_axis(padding, nd, 0), per_axis(dilation, nd, 1)


def _window_sum(
    x: Any,
    nd: int,
    kernel: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
) -> Any:
    """A max-pool's geometry with every window element counted (a ones convolution)."""
    torch = require_torch()
    F = torch.nn.functional
    k, s, p, d = _pool_geometry(nd, kernel, stride, padding, dilation)
    sizes = x.shape[-nd:]
    out_sizes = []
    for n, kk, ss, pp, dd in zip(sizes, k, s, p, d, strict=True):
        span = dd * (kk - 1) + 1
        if ceil_mode:
            out = -(-(n + 2 * pp - span) // ss) + 1
            if (out - 1) * ss >= n + pp:
                out -= 1
        else:
            out = (n + 2 * pp - span) // ss + 1
        out_sizes.append(out)
    pads: list[int] = []
    for n, kk, ss, pp, dd, out in reversed(list(zip(sizes, k, s, p, d, out_sizes, strict=True))):
        need = (out - 1) * ss + dd * (kk - 1) + 1
        pads += [pp, max(pp, need - n - pp)]
    lead = x.shape[:-nd]
    flat = x.reshape(-1, 1, *sizes)
    flat = F.pad(flat, pads)
    weight = torch.full((1, 1, *k), 1.0 / math.prod(k), dtype=x.dtype, device=x.device)
    conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    out = conv(flat, weight, stride=s, dilation=d)
    crop = (Ellipsis, *(slice(0, o) for o in out_sizes))
    out = out[crop]
    return out.reshape(*lead, *out_sizes)


def bind_args(args: Sequence[Any], kwargs: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Positional and keyword arguments of a call, by parameter name."""
    bound = dict(zip(names, args, strict=False))
    bound.update(kwargs)
    return bound


_CONV_NAMES = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")


def _constant_grouped_conv(nd: int, b: dict[str, Any]) -> Any:
    """A grouped convolution whose weights are all one positive constant, fast in float64.

    With a constant weight ``c`` every output channel of a group is ``c`` times the window
    sum of the sum of the group's input channels: one single-channel window sum per group
    instead of PyTorch's slow float64 grouped kernels.  None when it does not apply.
    """
    torch = require_torch()
    x, w = b["input"], b["weight"]
    groups = int(b.get("groups", 1))
    if groups == 1 or x.dim() != nd + 2 or w.numel() == 0:
        return None
    c = w.reshape(-1)[0]
    if not bool(c > 0) or not bool((w == c).all()):
        return None
    k = tuple(w.shape[2:])
    stride = per_axis(b.get("stride", 1), nd)
    dilation = per_axis(b.get("dilation", 1), nd)
    padding = b.get("padding", 0)
    n, channels = x.shape[:2]
    summed = x.reshape(n, groups, channels // groups, *x.shape[2:]).sum(2)
    if isinstance(padding, str):
        pads: list[int] = []
        for kk, dd in reversed(list(zip(k, dilation, strict=True))):
            total = dd * (kk - 1) if padding == "same" else 0
            pads += [total // 2, total - total // 2]
        summed = torch.nn.functional.pad(summed, pads)
        padding = 0
    windows = _window_sum(summed, nd, k, stride, padding, dilation) * (c * math.prod(k))
    out = windows.repeat_interleave(w.shape[0] // groups, dim=1)
    bias = b.get("bias")
    return out if bias is None else out + bias.reshape(1, -1, *([1] * nd))


_POOL_NAMES = (
    "input",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "ceil_mode",
    "return_indices",
)


class _Linearise:
    """Builds the TorchFunctionMode that makes a forward pass linear and positive."""

    def __init__(self) -> None:
        torch = require_torch()
        F = torch.nn.functional
        T = torch.Tensor
        self.identity: set[Any] = set()
        for owner in (F, torch, T):
            for name in LINEARISED_OPS:
                fn = getattr(owner, name, None)
                if fn is not None:
                    self.identity.add(fn)
        self.max_pools = {getattr(F, f"max_pool{n}d"): n for n in (1, 2, 3)} | {
            getattr(torch, f"max_pool{n}d"): n for n in (1, 2, 3)
        }
        self.max_pools_indices = {getattr(F, f"max_pool{n}d_with_indices"): n for n in (1, 2, 3)}
        self.adaptive_max = {getattr(F, f"adaptive_max_pool{n}d"): n for n in (1, 2, 3)} | {
            getattr(F, f"adaptive_max_pool{n}d_with_indices"): n for n in (1, 2, 3)
        }
        self.reductions = {torch.amax, torch.amin, T.amax, T.amin}
        self.max_dim = {torch.max, torch.min, T.max, T.min}
        self.convs = {getattr(F, f"conv{n}d"): n for n in (1, 2, 3)} | {
            getattr(torch, f"conv{n}d"): n for n in (1, 2, 3)
        }
        self.norms: dict[Any, str] = {}
        for owner in (F, torch, T):
            for name in _NORMS:
                fn = getattr(owner, name, None)
                if fn is not None:
                    self.norms[fn] = name
        self.softmax = {F.softmax, torch.softmax, T.softmax}
        self.attention = {F.scaled_dot_product_attention}

    def mode(self) -> Any:
        torch = require_torch()
        from torch.overrides import TorchFunctionMode

        outer = self
        F = torch.nn.functional

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                if func in outer.identity:
                    x = args[0] if args else next(iter(kwargs.values()))
                    if not _depends(x):  # a constant: computed as the model does
                        return func(*args, **kwargs)
                    norm = outer.norms.get(func)
                    return x if norm is None else _rescaled(x, norm, args, kwargs)
                if func in outer.softmax:
                    b = bind_args(args, kwargs, ("input", "dim"))
                    if _depends(b["input"]):
                        return _masked_softmax(b["input"], b.get("dim", -1))
                    return func(*args, **kwargs)
                if func in outer.attention:
                    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal")
                    b = bind_args(args, kwargs, names)
                    if any(_depends(b[k]) for k in ("query", "key", "value")):
                        return _attention(**b)
                    return func(*args, **kwargs)
                nd = outer.convs.get(func)
                if nd:
                    fast = _constant_grouped_conv(nd, bind_args(args, kwargs, _CONV_NAMES))
                    if fast is not None:
                        return fast
                nd = outer.max_pools.get(func) or outer.max_pools_indices.get(func)
                if nd:
                    b = bind_args(args, kwargs, _POOL_NAMES)
                    out = _window_sum(
                        b["input"],
                        nd,
                        b["kernel_size"],
                        b.get("stride"),
                        b.get("padding", 0),
                        b.get("dilation", 1),
                        bool(b.get("ceil_mode", False)),
                    )
                    if func in outer.max_pools_indices or b.get("return_indices"):
                        return out, torch.zeros(out.shape, dtype=torch.int64, device=out.device)
                    return out
                nd = outer.adaptive_max.get(func)
                if nd:
                    b = bind_args(args, kwargs, ("input", "output_size", "return_indices"))
                    pool = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)
                    out = pool[nd - 1](b["input"], b["output_size"])
                    if "with_indices" in getattr(func, "__name__", "") or b.get("return_indices"):
                        return out, torch.zeros(out.shape, dtype=torch.int64, device=out.device)
                    return out
                if func in outer.reductions:
                    b = bind_args(args, kwargs, ("input", "dim", "keepdim"))
                    dim = b.get("dim", ())
                    return b["input"].mean(
                        dim=dim if dim != () else None, keepdim=b.get("keepdim", False)
                    )
                if func in outer.max_dim and (len(args) > 1 or "dim" in kwargs):
                    b = bind_args(args, kwargs, ("input", "dim", "keepdim"))
                    if isinstance(b.get("dim"), int):
                        values = b["input"].mean(dim=b["dim"], keepdim=b.get("keepdim", False))
                        index = torch.zeros(values.shape, dtype=torch.int64, device=values.device)
                        return torch.return_types.max((values, index))
                return func(*args, **kwargs)

        return Mode()


def _depends(x: Any) -> bool:
    """Whether ``x`` is a tensor that depends on the input (in a linearised forward the
    parameters never need a gradient, so that is ``requires_grad``)."""
    torch = require_torch()
    return isinstance(x, torch.Tensor) and x.requires_grad


def _rescaled(x: Any, norm: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """A normalisation in a linearised forward: ``x`` divided by its root mean square
    (per sample; per position for layer and RMS norms; ``normalize``: by its norm), a
    constant for the gradient."""
    if x.dim() <= 1:
        dims: tuple[int, ...] = tuple(range(x.dim()))
    elif norm in ("layer_norm", "rms_norm"):
        shape = bind_args(args, kwargs, ("input", "normalized_shape")).get("normalized_shape")
        count = 1 if isinstance(shape, int) else len(shape or (0,))
        dims = tuple(range(x.dim() - count, x.dim()))
    elif norm == "normalize":  # the op's own norm, so cosine attention keeps its scale
        b = bind_args(args, kwargs, ("input", "p", "dim"))
        p, dim = float(b.get("p", 2.0)), int(b.get("dim", 1))
        return x / x.detach().norm(p=p, dim=dim, keepdim=True).clamp_min(1e-300)
    else:
        dims = tuple(range(1, x.dim()))
    scale = x.detach().pow(2).mean(dim=dims, keepdim=True).sqrt().clamp_min(1e-300)
    return x / scale


def _masked_softmax(x: Any, dim: int | None) -> Any:
    """A softmax whose weights below ``e**-50`` times the row's largest are exactly zero
    (they do not depend on their score at all)."""
    torch = require_torch()
    dim = -1 if dim is None else dim
    top = x.detach().amax(dim=dim, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    keep = x.detach() >= top - _MASKED
    weights = torch.exp(x - top) * keep
    return weights / weights.sum(dim=dim, keepdim=True)


def _attention(
    query: Any,
    key: Any,
    value: Any,
    attn_mask: Any = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Any:
    """``scaled_dot_product_attention`` written out, with :func:`_masked_softmax`."""
    torch = require_torch()
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(repeat, dim=-3)
        value = value.repeat_interleave(repeat, dim=-3)
    factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = query @ key.transpose(-2, -1) * factor
    n, s = scores.shape[-2:]
    if is_causal:
        causal = torch.ones(n, s, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    return _masked_softmax(scores, -1) @ value


_LINEARISE: _Linearise | None = None


@contextlib.contextmanager
def linearised() -> Iterator[None]:
    """Within this context every forward pass is linear where it depends on the input:
    activations and dropout are the identity, normalisations a constant scale, max-pools
    count every window element, and softmax weights below ``e**-50`` of their row's
    largest are zero (see the module docstring)."""
    global _LINEARISE
    if _LINEARISE is None:
        _LINEARISE = _Linearise()
    with _LINEARISE.mode():
        yield


def linearised_copy(model: Any) -> Any:
    """A float64, eval-mode deepcopy of ``model`` with positive parameters.

    Weights (parameters with 2 or more dimensions) become ``1/fan_in``, every other
    floating parameter 1; persistent floating buffers become 1 (running variances,
    frozen batch-norm scales) or 0 (running means).  Non-persistent floating buffers are
    derived constants (attention masks, position tables): they keep their values, in
    float64.  The parameters are created directly with these values (the model's own
    data is never copied).  Use the copy under :func:`linearised`.
    """
    torch = require_torch()
    memo: dict[int, Any] = {}
    for param in model.parameters():
        if id(param) in memo or not param.is_floating_point():
            continue
        value = 1.0 / max(1, param[0].numel()) if param.dim() >= 2 else 1.0
        data = torch.full(param.shape, value, dtype=torch.float64, device=param.device)
        memo[id(param)] = torch.nn.Parameter(data, requires_grad=False)
    for module in model.modules():
        derived = module._non_persistent_buffers_set
        for name, buf in module._buffers.items():
            if buf is None or id(buf) in memo or not buf.is_floating_point():
                continue
            if name in derived:
                memo[id(buf)] = buf.detach().to(torch.float64, copy=True)
                continue
            value = 0.0 if name.endswith("running_mean") else 1.0
            memo[id(buf)] = torch.full(buf.shape, value, dtype=torch.float64, device=buf.device)
    try:
        clone = copy.deepcopy(model, memo)
    except Exception as exc:
        raise ModelError(
            f"cannot copy the model to measure it: {type(exc).__name__}: {exc}"
        ) from exc
    return clone.to(dtype=torch.float64).eval()


# -- measuring --------------------------------------------------------------------------


class _Stop(Exception):
    """Raised by a forward hook once the requested layer has run."""


def first_tensor(value: Any) -> Any:
    """``value`` if it is a tensor, else the first tensor in it (tuples, lists, dicts)."""
    torch = require_torch()
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def _find_layer(model: Any, layer: str) -> Any:
    try:
        return model.get_submodule(layer)
    except AttributeError:
        return None


def spatial_dims(shape: Sequence[int], grid: Sequence[int]) -> tuple[int, ...]:
    """The dims of a batch-first tensor of ``shape`` that hold the spatial ``grid``,
    matched by size.

    Channels first ``(N, C, *grid)`` gives ``(2, 3, ...)``, channels last
    ``(N, *grid, C)`` gives ``(1, 2, ...)``, and tokens ``(N, T, C)`` -- ``T`` being the
    grid's size plus any leading class or register tokens -- give ``(1, 1, ...)``: the
    axes flattened row-major into dim 1.  Where no other layout fits, tokens folded into
    the batch ``(N * T, ...)`` give ``(0, 0, ...)``.  Where several layouts fit,
    channels first wins, then channels last.  A grid of ones that no layout fits (logits) has no
    spatial dims: ``()``.

    >>> spatial_dims((1, 96, 56, 56), (56, 56)), spatial_dims((1, 56, 56, 96), (56, 56))
    ((2, 3), (1, 2))
    >>> spatial_dims((1, 197, 192), (14, 14)), spatial_dims((1, 1000), (1, 1))
    ((1, 1), ())
    """
    shape, grid = tuple(int(n) for n in shape), tuple(int(n) for n in grid)
    n = len(grid)
    if len(shape) == n + 2 and shape[2:] == grid:
        return tuple(range(2, n + 2))
    if len(shape) == n + 2 and shape[1 : n + 1] == grid:
        return tuple(range(1, n + 1))
    if all(g == 1 for g in grid):
        return ()
    if len(shape) == 3 and shape[1] >= math.prod(grid):
        return (1,) * n
    if len(shape) >= 2 and math.prod(grid) > 1 and shape[0] % math.prod(grid) == 0:
        # tokens folded into the batch, ``(N * T, ...)``: TNT's pixel tokens, one
        # sequence per patch
        return (0,) * n
    raise InvalidSpecError(
        f"cannot find the spatial grid {list(grid)} in an output of shape {list(shape)} "
        "(channels first, channels last or tokens); pass spatial_dims"
    )


def unit_index(
    shape: Sequence[int], dims: Sequence[int], grid: Sequence[int], unit: Sequence[int]
) -> tuple[Any, ...]:
    """The index of ``unit`` (of ``grid``) in a tensor of ``shape`` whose spatial axes are
    in ``dims`` (see :func:`spatial_dims`); other dims are whole slices.

    >>> unit_index((1, 197, 192), (1, 1), (14, 14), (2, 3))
    (slice(None, None, None), 32, slice(None, None, None))
    """
    index: list[Any] = [slice(None)] * len(shape)
    axes_of: dict[int, list[int]] = {}
    for axis, d in enumerate(dims):
        axes_of.setdefault(int(d), []).append(axis)
    for d, axes in axes_of.items():
        position = 0
        for a in axes:
            position = position * int(grid[a]) + int(unit[a])
        tokens = math.prod(int(grid[a]) for a in axes)
        if d == 0:  # tokens folded into the batch: that token of every sample
            index[d] = slice(position, None, tokens)
            continue
        # leading class/register tokens come first
        index[d] = int(shape[d]) - tokens + position
    return tuple(index)


class _Prepared:
    """A linearised copy, run once, ready to backpropagate any number of units."""

    def __init__(
        self,
        model: Any,
        input_size: Sequence[int],
        layer: str | None,
        grid: Sequence[int] | None = None,
        dims: Sequence[int] | None = None,
    ) -> None:
        torch = require_torch()
        self.input_size = parse_input_size(input_size)
        self.ndim = len(self.input_size) - 1
        self.layer = layer
        self.model = linearised_copy(model)
        target = self.model
        module = None
        if layer is not None:
            module = _find_layer(self.model, layer)
            if module is None:
                target = _cut_at_node(self.model, layer)
        self.x = torch.full(
            (1, *self.input_size), _INPUT_VALUE, dtype=torch.float64, requires_grad=True
        )
        captured: list[Any] = []
        handle = None
        if module is not None:

            def hook(mod: Any, args: Any, output: Any) -> None:
                captured.append(output)
                raise _Stop

            handle = module.register_forward_hook(hook)
        try:
            with linearised():
                try:
                    out = target(self.x)
                except _Stop:
                    out = captured[0]
        except RFMapError:
            raise
        except Exception as exc:
            where = f" up to layer {layer!r}" if layer else ""
            raise ModelError(
                f"the model's forward{where} failed on input size {list(self.input_size)}: "
                f"{type(exc).__name__}: {_one_line(exc)}"
            ) from exc
        finally:
            if handle is not None:
                handle.remove()
        tensor = first_tensor(out)
        if tensor is None or not tensor.requires_grad:
            raise ModelError(
                f"the output{'' if layer is None else ' of ' + repr(layer)} does not depend on "
                "the input (no tensor with a gradient)"
            )
        self.out = tensor
        shape = tuple(tensor.shape)
        if grid is None:
            spatial = shape[2:] if tensor.dim() == self.ndim + 2 else ()
            self.grid: tuple[int, ...] = spatial
            self.dims: tuple[int, ...] = tuple(range(2, 2 + self.ndim)) if spatial else ()
            return
        grid = tuple(int(n) for n in grid)
        if len(grid) != self.ndim:
            raise InvalidSpecError(
                f"grid needs {self.ndim} extents (one per spatial axis), got {list(grid)}"
            )
        if dims is None:
            dims = spatial_dims(shape, grid)
        elif len(dims) != self.ndim or not all(
            isinstance(d, int) and 1 <= d < len(shape) for d in dims
        ):
            raise InvalidSpecError(
                f"spatial_dims must be {self.ndim} dims of the output (1 to {len(shape) - 1}, "
                f"its shape being {list(shape)}), got {list(dims)}"
            )
        self.dims = tuple(dims)
        self.grid = grid if self.dims else ()

    def support(self, unit: Sequence[int] | None) -> np.ndarray:
        """Boolean map (input spatial shape) of positions with a non-zero gradient."""
        torch = require_torch()
        if self.grid:
            units = _normalise_unit(unit, self.grid, self.layer or "output")
            index = unit_index(self.out.shape, self.dims, self.grid, units)
            selected = self.out[index].sum()
        else:
            selected = self.out.sum()
        (grad,) = torch.autograd.grad(selected, self.x, retain_graph=True, allow_unused=True)
        if grad is None:
            return np.zeros(self.input_size[1:], dtype=bool)
        return (grad[0] != 0).any(dim=0).cpu().numpy()

    def box(self, unit: Sequence[int] | None) -> tuple[tuple[int, int], ...]:
        return _mask_box(self.support(unit))


def _mask_box(mask: np.ndarray) -> tuple[tuple[int, int], ...]:
    boxes = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other) if other else mask)
        boxes.append((int(hit[0]), int(hit[-1]) + 1) if len(hit) else (0, 0))
    return tuple(boxes)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


def _cut_at_node(model: Any, name: str) -> Any:
    """A GraphModule that returns fx node ``name`` of ``model``."""
    torch = require_torch()
    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception as exc:
        raise ModelError(
            f"{name!r} is not a module of the model, and the model cannot be traced to find "
            f"a node of that name: {type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    nodes = {n.name: n for n in traced.graph.nodes}
    if name not in nodes:
        raise InvalidSpecError(f"layer {name!r} is neither a module nor a traced node of the model")
    graph = torch.fx.Graph()
    env: dict[Any, Any] = {}
    for node in traced.graph.nodes:
        if node.op == "output":
            break
        env[node] = graph.node_copy(node, lambda n: env[n])
        if node.name == name:
            break
    graph.output(env[nodes[name]])
    return torch.fx.GraphModule(traced, graph)


@dataclass(frozen=True)
class MeasuredRF:
    """The gradient support of one output unit: where ``d unit / d input`` is non-zero.

    ``box`` is the half-open box ``(start, stop)`` per spatial axis (``(0, 0)`` where
    nothing depends on the input), ``mask`` the support itself (input spatial shape).
    """

    node: str
    input_size: tuple[int, ...]
    grid: tuple[int, ...]
    unit: tuple[int, ...]
    box: tuple[tuple[int, int], ...]
    mask: np.ndarray = field(repr=False, compare=False)

    @property
    def receptive_field(self) -> tuple[int, ...]:
        """Extent of the support per axis (clipped to the input)."""
        return tuple(stop - start for start, stop in self.box)

    @property
    def support(self) -> int:
        """Number of input positions with a non-zero gradient."""
        return int(self.mask.sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (without the mask)."""
        return {
            "node": self.node,
            "input_size": list(self.input_size),
            "grid": list(self.grid),
            "unit": list(self.unit),
            "box": [list(b) for b in self.box],
            "receptive_field": list(self.receptive_field),
            "support": self.support,
        }


def measure_rf(
    model: Any,
    input_size: Sequence[int],
    unit: Sequence[int] | None = None,
    *,
    layer: str | None = None,
    grid: Sequence[int] | None = None,
    spatial_dims: Sequence[int] | None = None,
) -> MeasuredRF:
    """Measure which input positions output ``unit`` depends on, with the gradient.

    Parameters
    ----------
    model
        A ``torch.nn.Module``; it is copied, never modified.
    input_size
        ``(C, H, W)`` (or ``(C, L)``, ``(C, D, H, W)``), without the batch.
    unit
        Index of the output unit on the spatial grid of the output (default: its
        centre).  Outputs that are not ``(N, C, *spatial)`` (e.g. logits) have no grid:
        all their values are backpropagated together.
    layer
        Measure an intermediate output instead: a module name (``"layer2"``) or a
        ``torch.fx`` node name.
    grid
        The output's spatial grid, one extent per input axis, e.g. the analysis'
        :attr:`~rfmap.receptive.ReceptiveField.grid`.  Its dims are then found by size
        (:func:`spatial_dims`), so channels-last ``(N, H, W, C)`` and token ``(N, T, C)``
        outputs work.  Default: ``(N, C, *grid)`` outputs only.
    spatial_dims
        The output dims of the grid's axes, when matching by size is not wanted.

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.MaxPool2d(2))
    >>> m = measure_rf(net, (1, 8, 8), unit=(1, 1))
    >>> m.box, m.receptive_field
    (((1, 5), (1, 5)), (4, 4))
    """
    require_torch()
    prepared = _Prepared(model, input_size, layer, grid, spatial_dims)
    units = _normalise_unit(unit, prepared.grid, layer or "output") if prepared.grid else ()
    mask = prepared.support(units if prepared.grid else None)
    return MeasuredRF(
        node=layer or "output",
        input_size=prepared.input_size,
        grid=prepared.grid,
        unit=units,
        box=_mask_box(mask),
        mask=mask,
    )


def measure_boxes(
    model: Any,
    input_size: Sequence[int],
    units: Sequence[Sequence[int]],
    *,
    layer: str | None = None,
    grid: Sequence[int] | None = None,
    spatial_dims: Sequence[int] | None = None,
) -> list[tuple[tuple[int, int], ...]]:
    """Gradient support boxes of several units with one forward pass (see :func:`measure_rf`)."""
    prepared = _Prepared(model, input_size, layer, grid, spatial_dims)
    return [prepared.box(u if prepared.grid else None) for u in units]


def measure_model_rf(
    model: Any,
    input_size: Sequence[int],
    layer: str | None = None,
    *,
    reason: str = "",
) -> ReceptiveField:
    """A :class:`~rfmap.receptive.ReceptiveField` measured entirely with the gradient.

    Per axis, the centre unit and its neighbour give the receptive field, the stride
    and the padding.  These are exact when the centre unit's box lies inside the
    input; where it touches the border the receptive field is only a lower bound,
    which ``notes`` says (use a larger input).
    """
    prepared = _Prepared(model, input_size, layer)
    return measured_receptive_field(
        layer or "output",
        prepared.input_size[1:],
        tuple(prepared.out.shape),
        tuple(prepared.grid),
        prepared.box,
        how="with the gradient",
        reason=reason,
    )


def measure_windows(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    dependent: Sequence[int],
    in_dims: Sequence[dict[int, int]],
    out_dims: dict[int, int],
    max_units: int = 4096,
) -> list[dict[int, tuple[tuple[int, ...], ...]]] | None:
    """Measure the per-axis windows of one operation (used for unknown ops).

    ``inputs`` are the op's tensor arguments, ``dependent`` the indices of those that
    depend on the model input; ``in_dims[i]`` maps axis -> tensor dim for dependent
    input ``i`` and ``out_dims`` for the output.  Returns, per dependent input, axis ->
    windows (one tuple of positions per output unit), or None when the op does not
    behave (no tensor output, too many units).
    """
    torch = require_torch()
    args = []
    leaves = []
    for i, value in enumerate(inputs):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            value = value.detach().to(torch.float64)
            if i in dependent:
                value = torch.full_like(value, _INPUT_VALUE).requires_grad_(True)
                leaves.append(value)
        args.append(value)
    with linearised():
        out = first_tensor(fn(*args))
    if out is None or not out.requires_grad:
        return None
    results: list[dict[int, tuple[tuple[int, ...], ...]]] = [{} for _ in dependent]
    total = 0
    for axis, dim in out_dims.items():
        n = out.shape[dim]
        total += n
        if total > max_units:
            return None
        per_input: list[list[tuple[int, ...]]] = [[] for _ in dependent]
        for u in range(n):
            selected = out.select(dim, u).sum()
            grads = torch.autograd.grad(selected, leaves, retain_graph=True, allow_unused=True)
            for k, (grad, dims) in enumerate(zip(grads, in_dims, strict=True)):
                if axis not in dims:
                    continue
                if grad is None:
                    per_input[k].append(())
                    continue
                d = dims[axis]
                other = tuple(a for a in range(grad.dim()) if a != d)
                hit = (
                    np.flatnonzero((grad != 0).any(dim=other).cpu().numpy())
                    if other
                    else (np.flatnonzero((grad != 0).cpu().numpy()))
                )
                per_input[k].append(tuple(int(h) for h in hit))
        for k, dims in enumerate(in_dims):
            if axis in dims:
                results[k][axis] = tuple(per_input[k])
    return results

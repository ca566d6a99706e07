"""Receptive field of any PyTorch model: the public entry point (torch).

:func:`model_rf` captures every ATen operation the model runs
(:mod:`rfmap.frontends.torch`), builds the layer graph with the tensor algebra of
:mod:`rfmap.builder` and analyses it exactly (:mod:`rfmap.receptive`).

* Convolutions (1D/2D/3D, any padding, padding done inside ``forward`` as TF-style
  "same" convolutions do, dilation, groups), transposed convolutions, max/avg/LP pools
  (ceil mode, padding), adaptive and global pools, interpolation, pixel (un)shuffle,
  pads, slices, ``flatten``/``view``/``permute``, ``Linear``, reductions, concatenation,
  additions and other element-wise operations, attention (scaled dot-product, or written
  out as matrix products and softmax), window partitions and shifted windows, class
  tokens, recurrences (LSTM/GRU/RNN) are derived, whatever module or function runs them.
* Activations, dropout and normalisations are the identity for the receptive field
  (normalisation statistics are treated as constants, as every RF calculator does).
* Anything else is *measured*: the operation alone is run through the gradient
  (:func:`rfmap.measure.measure_windows`), and the result says so.  A model whose
  operations cannot even be measured one by one is measured as a whole
  (:func:`rfmap.measure.measure_model_rf`).

The model is run in eval mode (each module's mode is restored afterwards) on the meta
device, and is otherwise left untouched.  Needs PyTorch.
"""

from __future__ import annotations

import contextlib
import enum
import gc
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .errors import InvalidSpecError, ModelError
from .frontends.base import Traced
from .frontends.torch_rules import OpContext, register_module_rule, register_rule
from .gradient import require_torch
from .loading import parse_input_size
from .receptive import ReceptiveField, graph_rf
from .stages import LayersRF

__all__ = [
    "LayersRF",
    "Method",
    "OpContext",
    "TracedModel",
    "model_rf",
    "model_rfs",
    "model_stages",
    "register_module_rule",
    "register_rule",
    "trace_model",
]

#: What :func:`trace_model` returns (the graph, aliases, measured nodes and notes).
TracedModel = Traced


class Method(str, enum.Enum):
    """How :func:`model_rf` gets the receptive field.

    ``auto``: derive it from the ATen operations the model runs and measure, with the
    gradient, only the operations that cannot be derived; ``analytic``: derive it or
    raise :class:`~rfmap.errors.UnsupportedLayerError`; ``measure``: measure the whole
    model.
    """

    AUTO = "auto"
    ANALYTIC = "analytic"
    MEASURE = "measure"


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
    """Run ``model`` in eval mode and restore every module's own mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        if any(mode for _, mode in modes):
            model.eval()
        yield
    finally:
        for m, mode in modes:
            if m.training != mode:
                m.training = mode


def trace_model(
    model: Any, input_size: Sequence[int], *, method: Method | str = Method.AUTO
) -> Traced:
    """Capture ``model`` on an input of ``input_size`` (``(C, *spatial)``) into a graph.

    Raises :class:`~rfmap.errors.UnsupportedLayerError` for an op that cannot be
    derived (with ``method='analytic'``), and :class:`~rfmap.errors.ModelError` when
    the model cannot run or an operation can be neither derived nor measured.
    """
    torch = require_torch()
    from .frontends import torch as frontend

    method = _method(method)
    size = parse_input_size(input_size)
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model = frontend.copy_if_lazy(model)
    with _eval_mode(model):
        try:
            return frontend.trace(model, size, method.value)
        except frontend.GiveUp as exc:
            raise ModelError(f"cannot analyse the model: {exc}") from exc


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
        A ``torch.nn.Module``.  It is run once in eval mode on the meta device (modes
        are restored) and never modified.
    input_size
        ``(C, H, W)`` for 2D models, ``(C, L)`` for 1D, ``(C, D, H, W)`` for 3D
        (channels first, no batch).
    layer
        A module name (``"layer1.0"``, ``"features"``) or a graph node name (the rows
        of the table); default: the model output (the first one, if several).
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
    torch = require_torch()
    from .frontends import torch as frontend

    method = _method(method)
    size = parse_input_size(input_size)
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if method is Method.MEASURE:
        from .measure import measure_model_rf

        with _eval_mode(model):
            return measure_model_rf(model, size, layer)
    model = frontend.copy_if_lazy(model)
    try:
        with _gc_paused(), _eval_mode(model):
            traced = frontend.trace(model, size, method.value)
            return graph_rf(
                traced.graph, traced.resolve(layer), notes=traced.notes, aliases=traced.aliases
            )
    except frontend.GiveUp as exc:
        if method is Method.ANALYTIC:
            raise ModelError(f"cannot analyse the model: {exc}") from exc
        from .measure import measure_model_rf

        with _eval_mode(model):
            return measure_model_rf(model, size, layer, reason=f"measured as a whole: {exc}")


def _method(method: Method | str) -> Method:
    try:
        return Method(method)
    except ValueError:
        choices = ", ".join(m.value for m in Method)
        raise InvalidSpecError(f"method must be one of {choices}, got {method!r}") from None


def model_rfs(
    model: Any,
    input_size: Sequence[int],
    layers: Sequence[str | None],
    *,
    method: Method | str = Method.AUTO,
) -> LayersRF:
    """Receptive fields of several ``layers`` of ``model``, with one capture.

    ``layers`` are module or node names as for :func:`model_rf` (``None``: the output,
    named ``"output"``).  Each is analysed from the same graph, so asking for many
    layers costs little more than asking for one.  ``method`` is as for
    :func:`model_rf`; a model measured whole is measured once per layer.

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3), torch.nn.Conv1d(1, 1, 3, stride=2))
    >>> r = model_rfs(net, (1, 16), ["0", "1"])
    >>> [(name, f.receptive_field, f.stride) for name, f in r.layers]
    [('0', (3,), (1,)), ('1', (5,), (2,))]
    """
    if isinstance(layers, str):
        raise InvalidSpecError(f"layers must be a sequence of names, got the string {layers!r}")
    names = [("output" if layer is None else layer, layer) for layer in layers]
    if not names:
        raise InvalidSpecError("layers must name at least one layer")
    return _several(
        model,
        input_size,
        method,
        lambda traced: ([(n, traced.resolve(layer)) for n, layer in names], "layers"),
        names,
    )


def model_stages(
    model: Any, input_size: Sequence[int], *, method: Method | str = Method.AUTO
) -> LayersRF:
    """Receptive fields of the stages of ``model``, with one capture: timm's
    ``feature_info`` modules, the outputs of a model with several (a feature pyramid,
    timm ``features_only``), or the last module at each effective stride (see
    :func:`rfmap.stages.stage_layers`).

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3), torch.nn.Conv1d(1, 1, 3, stride=2),
    ...                           torch.nn.ReLU(), torch.nn.Conv1d(1, 1, 3, stride=2))
    >>> r = model_stages(net, (1, 32))
    >>> r.chosen_by, r.names(), [f.stride for _, f in r.layers]
    ('the last module at each stride', ['0', '2', '3'], [(1,), (2,), (4,)])
    """
    from .stages import stage_layers, timm_stage_modules

    modules = timm_stage_modules(model)
    fallback = None if modules is None else [(m, m) for m in modules]
    return _several(model, input_size, method, lambda t: stage_layers(model, t), fallback)


def _several(
    model: Any,
    input_size: Sequence[int],
    method: Method | str,
    pick: Callable[[Traced], tuple[list[tuple[str, str]], str]],
    fallback: Sequence[tuple[str, str | None]] | None,
) -> LayersRF:
    """Capture ``model`` once and analyse the nodes ``pick`` chooses from the capture;
    when the model is measured whole, measure each layer of ``fallback``."""
    torch = require_torch()
    from .frontends import torch as frontend
    from .stages import several_rf

    method = _method(method)
    size = parse_input_size(input_size)
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    reason = ""
    if method is not Method.MEASURE:
        model = frontend.copy_if_lazy(model)
        try:
            with _gc_paused(), _eval_mode(model):
                traced = frontend.trace(model, size, method.value)
                pairs, rule = pick(traced)
                return several_rf(traced, pairs, size[1:], rule)
        except frontend.GiveUp as exc:
            if method is Method.ANALYTIC:
                raise ModelError(f"cannot analyse the model: {exc}") from exc
            reason = f"measured as a whole: {exc}"
    if fallback is None:
        raise ModelError(
            "this model is measured whole"
            + (f" ({reason})" if reason else " (method='measure')")
            + ", so its stages are unknown: name the layers instead"
        )
    from .measure import measure_model_rf

    with _eval_mode(model):
        layers = tuple(
            (name, measure_model_rf(model, size, layer, reason=reason)) for name, layer in fallback
        )
    return LayersRF(tuple(size[1:]), layers, "layers")

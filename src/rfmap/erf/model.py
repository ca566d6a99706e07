"""The model as a function of its input: cut at a layer, checked, differentiated.

:func:`_layer_function` turns a model and a layer name (a module or a torch.fx node)
into ``x -> output of the layer``; :func:`_contributions` is the gradient of the
measured unit for one batch, the heart of the measurement.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import ModelError, RFMapError
from .result import Gradient

__all__: list[str] = []


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
    from ..gradient import require_torch

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


def _output_shape_real(
    fn: Callable[[Any], Any], shape: tuple[int, ...], dtype: Any, device: Any, layer: str | None
) -> tuple[int, ...]:
    from ..gradient import require_torch

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

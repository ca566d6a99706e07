"""Gradient maps with PyTorch autograd: the seed notebook's method, generalised.

This is the independent oracle for :mod:`rfmap.paths` and the baseline of the
benchmarks.  It builds a real ``nn.Sequential`` of ``nn.ConvNd`` layers with all
weights one and no bias, backpropagates one output unit, and returns ``input.grad``.
Needs PyTorch (``pip install rfmap[torch]``); importing :mod:`rfmap` does not load it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InvalidSpecError
from .specs import ConvLayer, conv_stack, output_sizes

__all__ = ["autograd_path_counts", "build_network", "require_torch", "seed_gradient"]


def require_torch() -> Any:
    """Import and return :mod:`torch`, with an actionable message if it is missing."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from .errors import RFMapError

        raise RFMapError(
            "this feature needs PyTorch: pip install 'rfmap[torch]' "
            "(or run 'make test', which installs the tested version)"
        ) from exc
    return torch


def build_network(layers: Sequence[ConvLayer], dtype: Any = None) -> Any:
    """An ``nn.Sequential`` of single-channel all-ones convolutions matching ``layers``."""
    torch = require_torch()
    nn = torch.nn
    conv_types = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
    pad_types = {1: nn.ConstantPad1d, 2: nn.ConstantPad2d, 3: nn.ConstantPad3d}
    modules: list[Any] = []
    for layer in layers:
        conv_type = conv_types[layer.ndim]
        padding: Any = layer.padding
        if layer.padding == "causal":
            # Causal: the whole dilated kernel span minus one on the left, none on the right
            # (worked out here from the kernel, independently of ConvLayer.pad, since this
            # network is the oracle).  ConstantPadNd takes (left, right) pairs, last axis first.
            pads: list[int] = []
            for axis in reversed(range(layer.ndim)):
                pads.extend((layer.dilation[axis] * (layer.kernel_size[axis] - 1), 0))
            modules.append(pad_types[layer.ndim](tuple(pads), 0.0))
            padding = 0
        elif not isinstance(padding, str):
            padding = tuple(padding)
        conv = conv_type(
            1,
            1,
            kernel_size=layer.kernel_size,
            stride=layer.stride,
            padding=padding,
            dilation=layer.dilation,
            bias=False,
            padding_mode="zeros",
        )
        with torch.no_grad():
            conv.weight.fill_(1)
        modules.append(conv)
    net = nn.Sequential(*modules)
    return net if dtype is None else net.to(dtype)


def autograd_path_counts(
    layers: Sequence[ConvLayer],
    size: int | Sequence[int],
    unit: Sequence[int] | None = None,
    dtype: Any = None,
) -> np.ndarray:
    """``input.grad`` of one output unit through an all-ones network (float64 by default).

    ``unit`` indexes the output grid (default: its centre).  The result is a float
    array; it equals the exact path counts while they stay below 2**53.
    """
    torch = require_torch()
    dtype = torch.float64 if dtype is None else dtype
    layers = tuple(layers)
    ndim = layers[0].ndim
    sizes = (size,) * ndim if isinstance(size, int) else tuple(size)
    out_size = output_sizes(layers, sizes)[-1]
    unit = tuple(n // 2 for n in out_size) if unit is None else tuple(unit)
    if len(unit) != ndim:
        raise InvalidSpecError(f"unit needs {ndim} indices, got {list(unit)}")
    net = build_network(layers, dtype)
    x = torch.zeros((1, 1, *sizes), dtype=dtype, requires_grad=True)
    with warnings.catch_warnings():
        # PyTorch notes that 'same' with even kernels pads a copy of the input: expected.
        warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
        out = net(x)
    index = (0, 0, *unit)
    out[index].backward()
    assert x.grad is not None
    return x.grad[0, 0].detach().cpu().numpy()


def seed_gradient(dilation_rates: Sequence[int], pixels: int = 21) -> np.ndarray:
    """The seed notebook's ``inference_and_return_grad``, verbatim in method (float32, 2D).

    Builds the network anew on every call, as the notebook did; used as the baseline.
    """
    torch = require_torch()
    layers = conv_stack(list(dilation_rates), 3, ndim=2)
    net = build_network(layers)
    input_image = torch.zeros((1, 1, pixels, pixels))
    input_image.requires_grad_(True)
    output = net(input_image)
    center_pixel = output[0, 0, pixels // 2, pixels // 2]
    center_pixel.backward()
    assert input_image.grad is not None
    return input_image.grad[0, 0].numpy()

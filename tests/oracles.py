"""Independent oracles for the exact engine, shared by the tests.

``brute_force_counts`` counts paths by their definition: it enumerates every choice of
kernel tap in every layer, walks from the output unit back to the input, drops a path
as soon as it lands in zero padding, and counts where the survivors arrive.  It uses
neither separability nor the engine's backward recursion, and works out PyTorch's
paddings and output sizes itself rather than asking :mod:`rfmap.specs`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from hypothesis import settings

from rfmap.specs import ConvLayer


def examples(n: int) -> int:
    """A property's example budget: ``n``, or the profile's when larger.

    An explicit ``@settings(max_examples=n)`` would override the profile, so
    ``HYPOTHESIS_PROFILE=thorough`` (1000 examples, see conftest.py) could not dig deeper.
    """
    return max(n, settings().max_examples)


def left_right_padding(layer: ConvLayer, axis: int) -> tuple[int, int]:
    """Zero padding as PyTorch applies it, written out here apart from ``ConvLayer.pad``.

    'same' (``torch.nn.modules.conv._ConvNd``): total ``d*(k-1)``, left ``total // 2``;
    'causal': everything on the left; 'valid': none; an integer ``p``: ``p`` on each side.
    """
    total = layer.dilation[axis] * (layer.kernel_size[axis] - 1)
    if layer.padding == "same":
        return total // 2, total - total // 2
    if layer.padding == "causal":
        return total, 0
    if layer.padding == "valid":
        return 0, 0
    assert not isinstance(layer.padding, str)
    return layer.padding[axis], layer.padding[axis]


def layer_sizes(layers: Sequence[ConvLayer], size: Sequence[int]) -> list[list[int]]:
    """Input size of every layer and the output size, by ``nn.ConvNd``'s formula."""
    sizes = [list(size)]
    for layer in layers:
        out = []
        for axis, n in enumerate(sizes[-1]):
            left, right = left_right_padding(layer, axis)
            span = layer.dilation[axis] * (layer.kernel_size[axis] - 1) + 1
            out.append((n + left + right - span) // layer.stride[axis] + 1)
        sizes.append(out)
    return sizes


def brute_force_counts(
    layers: Sequence[ConvLayer], size: Sequence[int], unit: Sequence[int]
) -> np.ndarray:
    """Path counts by enumerating all tap combinations (Python ints, object array)."""
    sizes = layer_sizes(layers, size)
    assert min(sizes[-1]) >= 1, "the stack leaves no output"
    ndim = len(size)
    counts = np.zeros(tuple(size), dtype=object)
    counts[...] = 0
    tap_choices = [
        list(itertools.product(*(range(layer.kernel_size[a]) for a in range(ndim))))
        for layer in layers
    ]
    for taps in itertools.product(*reversed(tap_choices)):
        position = list(unit)
        alive = True
        for depth, tap in zip(range(len(layers) - 1, -1, -1), taps, strict=True):
            layer = layers[depth]
            for a in range(ndim):
                left = left_right_padding(layer, a)[0]
                position[a] = position[a] * layer.stride[a] - left + tap[a] * layer.dilation[a]
                if not 0 <= position[a] < sizes[depth][a]:
                    alive = False
                    break
            if not alive:
                break
        if alive:
            counts[tuple(position)] += 1
    return counts


def paths_1d_unbounded(dilations: Sequence[int], kernels: Sequence[int]) -> dict[int, int]:
    """Offsets reached by a stride-1 stack on an unbounded line, with their path counts.

    Offsets are relative to the output unit, with 'same' padding's left shift per layer.
    """
    reached = {0: 1}
    for d, k in zip(reversed(dilations), reversed(kernels), strict=True):
        left = d * (k - 1) // 2
        nxt: dict[int, int] = {}
        for position, n in reached.items():
            for tap in range(k):
                q = position - left + tap * d
                nxt[q] = nxt.get(q, 0) + n
        reached = nxt
    return reached

"""Independent oracles for the exact engine, shared by the tests.

``brute_force_counts`` counts paths by their definition: it enumerates every choice of
kernel tap in every layer, walks from the output unit back to the input, drops a path
as soon as it lands in zero padding, and counts where the survivors arrive.  It uses
neither separability nor the engine's backward recursion.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from rfmap.specs import ConvLayer, output_sizes


def brute_force_counts(
    layers: Sequence[ConvLayer], size: Sequence[int], unit: Sequence[int]
) -> np.ndarray:
    """Path counts by enumerating all tap combinations (Python ints, object array)."""
    sizes = output_sizes(layers, size)
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
                position[a] = (
                    position[a] * layer.stride[a] - layer.pad(a)[0] + tap[a] * layer.dilation[a]
                )
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

"""The oracle of the JAX, Flax and Keras frontend tests: the float64 Jacobian's support.

``jax.jacrev`` of a function on a positive input, with positive weights and no
non-linearity that can switch off (or with the model linearised), has a non-zero entry
exactly where some path links an input position to an output element.  Reduced over
the non-spatial dims, it is the exact input support of every output unit, which the
analysis must reproduce (``support_mask`` clipped to the input, and ``input_box``).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from rfmap.frontends.jax import jax_rf, trace_jax
from rfmap.graph import support_mask

# -- the oracle -------------------------------------------------------------------------


def jacobian_support(f, shape, in_dims, out_dims):
    """``support[out_unit + in_position]``: the float64 Jacobian of ``f`` at ones,
    reduced over the non-spatial dims of both sides."""
    with jax.enable_x64(True):
        jac = np.asarray(jax.jit(jax.jacrev(f))(jnp.ones(shape, jnp.float64)))
    nz = jac != 0
    out_rank = nz.ndim - len(shape)
    out_other = tuple(d for d in range(out_rank) if d not in out_dims)
    in_other = tuple(out_rank + d for d in range(len(shape)) if d not in in_dims)
    nz = nz.any(axis=out_other + in_other) if out_other + in_other else nz
    # order: output spatial dims by axis, then input spatial dims by axis
    out_kept = [d for d in range(out_rank) if d in out_dims]
    in_kept = [d for d in range(len(shape)) if d in in_dims]
    order = [out_kept.index(d) for d in out_dims] + [
        len(out_kept) + in_kept.index(d) for d in in_dims
    ]
    return nz.transpose(order)


def analytic_mask(graph, node, unit, size):
    origin, mask = support_mask(graph, node, unit, clip=True)
    full = np.zeros(size, dtype=bool)
    hits = np.argwhere(mask) + np.asarray(origin, dtype=np.int64)
    if len(hits):
        full[tuple(hits.T)] = True
    return full


def box_of(mask):
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other) if other else mask)
        out.append((int(hit[0]), int(hit[-1]) + 1) if len(hit) else (0, 0))
    return tuple(out)


def assert_supports_equal(
    f, input_size, channels="last", out_dims=None, units=None, model=None, layer=None
):
    """Every unit's analytic support equals the Jacobian of ``f`` (and its box);
    ``model`` (default: ``f``) is what the analysis traces, ``layer`` its node."""
    model = f if model is None else model
    traced = trace_jax(model, input_size, channels=channels)
    jm = traced.model
    graph = traced.graph
    node = traced.resolve(layer)
    grid = graph.nodes[node].extents
    if out_dims is None:
        out_dims = jm.spatial_dims
    truth = jacobian_support(f, jm.input_shape, jm.spatial_dims, out_dims)
    assert truth.shape[: len(grid)] == tuple(grid)
    result = jax_rf(model, input_size, layer, channels=channels)
    chosen = list(itertools.product(*map(range, grid))) if units is None else units
    for unit in chosen:
        want = truth[unit]
        got = analytic_mask(graph, node, unit, jm.input_size)
        assert np.array_equal(got, want), (unit, box_of(got), box_of(want))
        if want.any():
            assert result.input_box(unit) == box_of(want), unit
    return traced

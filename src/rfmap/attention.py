"""Attention with masks: which keys each query really reads (numpy only).

Attention written out as matrix products (``q @ k.T``, a mask added, softmax,
``@ v``) is read by :mod:`rfmap.builder` as every query reading every key of its
window or sequence.  A mask changes that: shifted-window attention (Swin) adds -100
to the scores of token pairs that the roll brought together from opposite borders,
and causal attention masks future tokens.  :class:`Scores` keeps the query and key
tensors of a product ``q @ k.T`` beside its result, and which (query, key) pairs are
still *alive*; :func:`read_masked` builds the node of ``softmax(scores) @ v`` from the
pairs alive.

A score pair is dead when its additive mask is below :data:`DEAD_BELOW` (``-50``: its
softmax weight is below e^-50 of the others, so the key is not read, as the mask
intends), or when a boolean mask removes it.  The windows of the keys and values are
exact per axis (:class:`~rfmap.windows.Table`), which is the exact support when the
mask is a product of per-axis masks, as shifted-window masks are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .windows import IDENTITY, Table, Window

if TYPE_CHECKING:
    from .builder import GraphBuilder, Part, TensorRef

__all__ = ["DEAD_BELOW", "Scores", "mask_scores", "read_masked"]

#: An additive mask below this value removes a (query, key) pair (e^-50 of a weight).
DEAD_BELOW = -50.0


@dataclass(frozen=True)
class Scores:
    """The operands of ``q @ kt`` and the pairs still alive.

    ``q`` is ``(..., nq, d)``, ``kt`` is ``(..., d, nk)``; ``alive`` is None (every
    pair) or a boolean array ``(batch, nq, nk)`` over the flattened leading dims.
    """

    q: TensorRef
    kt: TensorRef
    batch: int
    nq: int
    nk: int
    alive: np.ndarray | None = None


def mask_scores(x: TensorRef, alive: np.ndarray) -> TensorRef:
    """``x`` (scores) with only the pairs where ``alive`` (broadcast to ``x``) is True."""
    scores = x.scores
    if scores is None:
        return x
    full = np.broadcast_to(np.asarray(alive, dtype=bool), x.shape)
    full = full.reshape(scores.batch, scores.nq, scores.nk)
    now = full if scores.alive is None else scores.alive & full
    return replace(x, scores=replace(scores, alive=now))


def read_masked(
    b: GraphBuilder, name: str, op: str, attn: TensorRef, v: TensorRef, shape: tuple[int, ...]
) -> TensorRef | None:
    """``attn @ v`` where ``attn`` holds masked scores: a node whose queries read the
    keys and values of their alive pairs only.  None when the operands are not the plain
    tensors this needs (the caller then reads every key)."""
    from .builder import Part, TensorRef, _flat
    from .elements import _part_units

    scores = attn.scores
    if scores is None or scores.alive is None:
        return None
    q, kt = scores.q.single, scores.kt.single
    vp = v.single
    if q is None or kt is None or vp is None:
        return None
    batch, nq, nk = scores.batch, scores.nq, scores.nk
    if int(np.prod(v.shape[:-2], dtype=np.int64)) != batch or v.shape[-2] != nk:
        return None
    ndim = b.ndim
    # a query's position must not depend on its features (nor keys' and values'): then
    # the first feature of each gives the positions
    firsts = [_first_feature(p, d) for p, d in ((q, -1), (kt, -2), (vp, -1))]
    if any(p is None for p in firsts):
        return None
    q1, kt1, vp1 = firsts
    uq = _part_units(q1, ndim).reshape(batch, nq, ndim)  # type: ignore[arg-type]
    uk = _part_units(kt1, ndim).reshape(batch, nk, ndim)  # type: ignore[arg-type]
    uv = _part_units(vp1, ndim).reshape(batch, nk, ndim)  # type: ignore[arg-type]
    alive = scores.alive
    # heads repeat the same positions and mask: keep one batch of each kind
    keys: dict[bytes, int] = {}
    for index in range(batch):
        key = b"".join(a[index].tobytes() for a in (uq, uk, uv, alive))
        keys.setdefault(key, index)
    kept = np.fromiter(keys.values(), dtype=np.int64)
    uq, uk, uv, alive = uq[kept], uk[kept], uv[kept], alive[kept]
    q_ext = b.extents(q.node)
    weights = alive.astype(np.float32)
    edges: list[tuple[str, list[Window]]] = [(q.node, [IDENTITY] * ndim)]
    for source, positions in ((kt.node, uk), (vp.node, uv)):
        src_ext = b.extents(source)
        windows: list[Window] = []
        for a in range(ndim):
            windows.append(_table(uq[..., a], weights, positions[..., a], q_ext[a], src_ext[a]))
        edges.append((source, windows))
    node = b.add_node(name, op, q_ext, edges, shape)
    layout = (*q.layout[:-1], _flat(shape[-1]))
    if len(layout) != len(shape):
        return None
    return TensorRef(shape, (Part(node, tuple((0, n) for n in shape), layout),))


def _first_feature(p: Part, dim: int) -> Part | None:
    """``p`` cut to its first element along ``dim`` (None if ``dim`` holds positions)."""
    from .builder import Part, _flat
    from .layouts import _spatial

    if _spatial(p.layout[dim]):
        return None
    region, layout = list(p.region), list(p.layout)
    region[dim] = (region[dim][0], region[dim][0] + 1)
    layout[dim] = _flat(1)
    return Part(p.node, tuple(region), tuple(layout))


def _table(
    units: np.ndarray, alive: np.ndarray, positions: np.ndarray, extent: int, size: int
) -> Window:
    """The positions read along one axis by each unit: unit ``units[b, i]`` reads
    ``positions[b, j]`` where ``alive[b, i, j]``, as a window."""
    queries = np.zeros((*units.shape, extent), dtype=np.float32)
    np.put_along_axis(queries, units[..., None], 1.0, axis=-1)
    keys = np.zeros((*positions.shape, size), dtype=np.float32)
    np.put_along_axis(keys, positions[..., None], 1.0, axis=-1)
    # read[u, p] > 0 when some alive pair links a query at u to a key at p
    read = (np.matmul(queries.transpose(0, 2, 1), np.matmul(alive, keys)) > 0).any(axis=0)
    windows = tuple(tuple(int(p) for p in np.flatnonzero(row)) for row in read)
    if extent == 1 and windows[0] == (0,):
        return IDENTITY
    return Table(windows)

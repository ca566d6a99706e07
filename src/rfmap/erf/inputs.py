"""Inputs: image sets, arrays and iterables of batches, read one batch at a time.

:func:`_source` gives every kind of input one shape, a :class:`_Source`: a count (if
known) and this process's batches, each input cropped as soon as it is read.  Image
files are decoded in worker threads one batch ahead (:func:`_prefetch`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import RFMapError, UnreadableImageError
from ..images import ImageSet
from .memory import MAX_BATCH_BYTES

__all__: list[str] = []


#: Spatial slices of a crop (``None``: the whole input).
_Window = tuple[slice, ...] | None


#: What a source yields: the indices of the inputs in a batch, and the batch.
_Batch = tuple[Sequence[int], Any]


@dataclass
class _Source:
    """A uniform view of the inputs: a count (if known) and batches of numpy/torch arrays.

    ``batches(size, rank, world, window)`` yields ``(indices, batch)`` for this process's
    batches, each input cropped to ``window`` as soon as it is read, so that only the
    crops of a batch are held in memory, however large the inputs are.  ``indices`` are
    the inputs' positions (for :attr:`names`).  Image files that cannot be read are
    left out of their batch when the source skips them, and listed in :attr:`skipped`.
    """

    input_size: tuple[int, ...]
    count: int | None
    names: Callable[[int], str]
    description: dict[str, Any]
    batches: Callable[[int, int, int, _Window], Iterator[_Batch]]
    skip_unreadable: bool = False
    skipped: list[int] = field(default_factory=list)


def _source(inputs: Any, limit: int | None, skip_unreadable: bool = False) -> _Source:
    """The :class:`_Source` of ``inputs`` (at most ``limit`` of them).

    With ``skip_unreadable`` an image file that cannot be read is skipped (its index goes
    to ``skipped``); otherwise it raises :class:`~rfmap.errors.UnreadableImageError`.
    """
    from ..gradient import require_torch

    torch = require_torch()
    if isinstance(inputs, ImageSet):
        image_set = inputs
        count = len(image_set) if limit is None else min(limit, len(image_set))

        def image_batches(size: int, rank: int, world: int, window: _Window) -> Iterator[_Batch]:
            starts = range(0, count, size)[rank::world]
            yield from _prefetch(image_set, starts, size, count, window, source)

        source = _Source(
            tuple(image_set.input_size),
            count,
            lambda i: image_set.names[i],
            image_set.to_dict() | {"count": count},
            image_batches,
            skip_unreadable,
        )
        return source
    if isinstance(inputs, (np.ndarray, torch.Tensor)):
        array = inputs
        if array.ndim < 3:
            raise RFMapError(
                f"inputs must be a batch of shape (N, C, *spatial), got shape {list(array.shape)}"
            )
        count = array.shape[0] if limit is None else min(limit, array.shape[0])
        if count < 1:
            raise RFMapError("inputs hold no images (N = 0)")

        def array_batches(size: int, rank: int, world: int, window: _Window) -> Iterator[_Batch]:
            for start in range(0, count, size)[rank::world]:
                stop = min(start + size, count)
                yield range(start, stop), _cropped(array[start:stop], window)

        return _Source(
            tuple(int(s) for s in array.shape[1:]),
            count,
            lambda i: f"input {i}",
            {"kind": "array", "count": count, "input_size": list(array.shape[1:])},
            array_batches,
        )
    if isinstance(inputs, Iterable) and not isinstance(inputs, (str, bytes)):
        iterator = iter(inputs)
        try:
            first = _batch_tensor(next(iterator))
        except StopIteration:
            raise RFMapError("inputs hold no batches") from None

        expected = tuple(int(s) for s in first.shape[1:])

        def iter_batches(size: int, rank: int, world: int, window: _Window) -> Iterator[_Batch]:
            seen = 0
            for index, item in enumerate(_chain(first, iterator)):
                batch = _batch_tensor(item)
                if tuple(batch.shape[1:]) != expected:
                    raise RFMapError(
                        f"input {seen} has shape {list(batch.shape[1:])}, expected {list(expected)}"
                    )
                if limit is not None:
                    batch = batch[: max(0, limit - seen)]
                if len(batch) == 0:
                    return
                if index % world == rank:
                    yield range(seen, seen + len(batch)), _cropped(batch, window)
                seen += len(batch)

        return _Source(
            tuple(int(s) for s in first.shape[1:]),
            None,
            lambda i: f"input {i}",
            {"kind": "batches", "input_size": list(first.shape[1:])},
            iter_batches,
        )
    raise RFMapError(
        "inputs must be an ImageSet (noise_images, sample_images, folder_images), an array "
        f"of shape (N, C, *spatial) or an iterable of such batches, got {type(inputs).__name__}"
    )


def _cropped(batch: Any, window: _Window) -> Any:
    """``batch[:, :, *window]`` (a view)."""
    if window is None:
        return batch
    index = (slice(None), slice(None), *window)
    return batch[index]


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _batch_tensor(item: Any) -> Any:
    from ..gradient import require_torch

    torch = require_torch()
    if isinstance(item, (tuple, list)) and item:
        item = item[0]  # (images, labels) as a DataLoader yields them
    if isinstance(item, np.ndarray):
        item = torch.from_numpy(item)
    if not isinstance(item, torch.Tensor) or item.ndim < 3:
        raise RFMapError(
            "each batch must be a tensor of shape (N, C, *spatial) or an (images, labels) pair, "
            f"got {type(item).__name__}"
        )
    return item


def _prefetch(
    image_set: ImageSet,
    starts: Sequence[int],
    size: int,
    count: int,
    window: _Window,
    source: _Source,
) -> Iterator[_Batch]:
    """Load batches in worker threads, one batch ahead, so decoding overlaps the model.

    Each input is cropped to ``window`` as soon as it is loaded: a batch holds crops only.
    An unreadable image is left out of its batch (and listed in ``source.skipped``) when
    the source skips them; a batch left empty is not yielded.
    """
    index = (slice(None), *window) if window is not None else ()

    def load(i: int) -> np.ndarray | None:
        try:
            return np.ascontiguousarray(image_set.load(i)[index])
        except UnreadableImageError as exc:
            if not source.skip_unreadable:
                raise UnreadableImageError(
                    f"{exc}; skip_unreadable=True (rfmap erf --skip-unreadable) skips such images"
                ) from exc
            source.skipped.append(i)
            return None

    def batch(start: int, loaded: Iterable[np.ndarray | None]) -> _Batch | None:
        indices = range(start, min(start + size, count))
        kept = [(i, x) for i, x in zip(indices, loaded, strict=True) if x is not None]
        if not kept:
            return None
        return [i for i, _ in kept], np.stack([x for _, x in kept])

    if len(starts) <= 1 or image_set.kind.value == "noise":
        for start in starts:
            done = batch(start, [load(i) for i in range(start, min(start + size, count))])
            if done is not None:
                yield done
        return
    # Each worker holds one full-size input while it decodes and resizes it.
    full = math.prod(image_set.input_size) * 4
    workers = max(1, min(8, os.cpu_count() or 1, MAX_BATCH_BYTES // (2 * full)))
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def submit(start: int) -> list[Future[np.ndarray | None]]:
            indices = range(start, min(start + size, count))
            return [pool.submit(load, i) for i in indices]

        pending = submit(starts[0])
        for position, start in enumerate(starts):
            current = pending
            if position + 1 < len(starts):
                pending = submit(starts[position + 1])
            done = batch(start, [f.result() for f in current])
            if done is not None:
                yield done

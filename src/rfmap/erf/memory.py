"""Memory: shapes and activation sizes probed on the meta device, and batch sizes.

A copy of the model on PyTorch's ``meta`` device costs no memory; running it tells the
output shape and the bytes autograd saves per input, from which the automatic batch
size follows.  Sizes too large to allocate are refused before anything is allocated.
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any

from ..errors import MapTooLargeError
from .distributed import _comm_device, _Group
from .model import _layer_function

__all__ = ["CPU_MEMORY_BUDGET", "FALLBACK_BATCH", "MAX_AUTO_BATCH", "MAX_BATCH_BYTES"]


#: Largest batch the automatic batch size picks.
MAX_AUTO_BATCH = 64
#: Batch size when the memory needed per input cannot be measured.
FALLBACK_BATCH = 4
#: Memory budget for the activations of one batch on the CPU (bytes), unless told otherwise.
CPU_MEMORY_BUDGET = 2 * 2**30
#: Largest input batch tensor allowed (bytes), checked before allocating.
MAX_BATCH_BYTES = 8 * 2**30


def _meta_clone(model: Any) -> Any:
    """A copy of ``model`` on PyTorch's meta device (shapes only, no memory), or ``None``."""
    from ..gradient import require_torch

    torch = require_torch()
    # Pre-seed deepcopy's memo with meta stand-ins, so no parameter data is ever copied.
    memo: dict[int, Any] = {}
    with torch.no_grad():
        for p in model.parameters():
            memo[id(p)] = torch.nn.Parameter(
                torch.empty_like(p, device="meta"), requires_grad=p.requires_grad
            )
        for b in model.buffers():
            memo[id(b)] = torch.empty_like(b, device="meta")
    try:
        return copy.deepcopy(model, memo).to("meta")
    except Exception:
        return None


def _probe(
    clone: Any, layer: str | None, shape: tuple[int, ...], dtype: Any
) -> tuple[tuple[int, ...], int] | None:
    """Output shape (batch 1) and activation bytes per input, run on a meta-device clone.

    The bytes are those autograd saves for the backward pass, counted for batches of one
    and two inputs; their difference is the cost of one more input.
    """
    from ..gradient import require_torch

    torch = require_torch()
    if clone is None:
        return None
    saved: list[int] = []

    def pack(t: Any) -> Any:
        saved[-1] += t.numel() * t.element_size()
        return t

    shapes = []
    try:
        with _layer_function(clone, layer) as fn, torch.enable_grad():
            for batch in (1, 2):
                saved.append(0)
                x = torch.empty((batch, *shape), device="meta", dtype=dtype, requires_grad=True)
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    out = fn(x)
                if not isinstance(out, torch.Tensor):
                    return None
                shapes.append(tuple(out.shape))
    except Exception:
        return None
    return shapes[0], max(saved[1] - saved[0], 1)


def _memory_budget(device: Any) -> int:
    from ..gradient import require_torch

    torch = require_torch()
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return CPU_MEMORY_BUDGET
    return int(min(CPU_MEMORY_BUDGET, available * 0.4))


def _auto_batch(
    probe: tuple[tuple[int, ...], int] | None, device: Any, budget: int | None, group: _Group
) -> int:
    """A batch size whose saved activations fit ``budget``; the same on every process."""
    from ..gradient import require_torch

    torch = require_torch()
    if probe is None:
        size = FALLBACK_BATCH
    else:
        limit = budget if budget is not None else _memory_budget(device)
        size = int(max(1, min(MAX_AUTO_BATCH, limit // probe[1])))
    # Every process must deal the same batches, or the split would differ.
    agreed = torch.tensor([size], dtype=torch.int64, device=_comm_device(group, device))
    return int(group.all_reduce(agreed, "min").item())


def _check_input_bytes(shape: tuple[int, ...]) -> None:
    need = math.prod(shape) * 4
    if need > MAX_BATCH_BYTES:
        raise MapTooLargeError(
            f"one input of size {'x'.join(map(str, shape))} needs {need / 2**30:.1f} GiB "
            f"(float32), more than {MAX_BATCH_BYTES / 2**30:.0f} GiB; use a smaller input size"
        )


def _check_batch_bytes(size: int, shape: tuple[int, ...], dtype: Any) -> None:
    from ..gradient import require_torch

    torch = require_torch()
    itemsize = torch.empty((), dtype=dtype).element_size()
    need = size * math.prod(shape) * itemsize
    if need > MAX_BATCH_BYTES:
        raise MapTooLargeError(
            f"a batch of {size} inputs of size {'x'.join(map(str, shape))} needs "
            f"{need / 2**30:.1f} GiB, more than {MAX_BATCH_BYTES / 2**30:.0f} GiB; "
            "use a smaller batch size or input size"
        )

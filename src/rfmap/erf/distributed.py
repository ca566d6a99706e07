"""Devices and processes: the device to run on, and torchrun's process group.

Under ``torchrun`` the batches are dealt round-robin to the ranks and the maps summed
with an all-reduce (:class:`_Group`), which gives the single-process result.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import RFMapError

__all__ = ["process_group", "resolve_device"]


def resolve_device(device: str | Any = "auto", local_rank: int | None = None) -> Any:
    """The torch device for ``device``: ``"auto"`` is CUDA when present, else the CPU.

    Under ``torchrun`` each process takes the GPU of its ``LOCAL_RANK``.
    """
    from ..gradient import require_torch

    torch = require_torch()
    text = str(device).strip().lower() if not isinstance(device, torch.device) else None
    if text == "auto":
        if torch.cuda.is_available():
            index = local_rank if local_rank is not None else 0
            return torch.device("cuda", index % max(torch.cuda.device_count(), 1))
        return torch.device("cpu")
    try:
        chosen = torch.device(device) if text is None else torch.device(text)
    except (RuntimeError, ValueError):
        raise RFMapError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise RFMapError(f"device {device!r} was asked for but CUDA is not available here")
        if chosen.index is None:
            index = local_rank if local_rank is not None else 0
            chosen = torch.device("cuda", index % torch.cuda.device_count())
        elif chosen.index >= torch.cuda.device_count():
            raise RFMapError(
                f"device {device!r} does not exist: {torch.cuda.device_count()} GPU(s) here"
            )
    return chosen


@dataclass
class _Group:
    """The process group of a distributed run (or a single process)."""

    rank: int = 0
    world: int = 1
    created: bool = False
    backend: str | None = None

    def all_reduce(self, tensor: Any, op: str = "sum") -> Any:
        if self.world == 1:
            return tensor
        import torch.distributed as dist

        ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
        dist.all_reduce(tensor, op=ops[op])
        return tensor

    def all_gather(self, items: list[Any]) -> list[Any]:
        """Every process's ``items``, concatenated in rank order (picklable items)."""
        if self.world == 1:
            return list(items)
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, items)
        return [item for part in gathered for item in part]

    def sync_model(self, model: Any, device: Any) -> bool:
        """Give every process rank 0's parameters and buffers if they differ; say if so.

        As DDP does at construction: a randomly initialised model (no weights file) is
        drawn differently by each process, and the ranks must measure the same model.
        """
        if self.world == 1:
            return False
        import torch
        import torch.distributed as dist

        tensors = list(model.parameters()) + list(model.buffers())
        with torch.no_grad():
            sums = [t.detach().double().sum() for t in tensors]
            squares = [t.detach().double().square().sum() for t in tensors]
            local = (
                torch.stack([torch.stack(sums).sum(), torch.stack(squares).sum()])
                if tensors
                else torch.zeros(2, dtype=torch.float64, device=device)
            )
            comm = _comm_device(self, device)
            high = self.all_reduce(local.to(comm).clone(), "max")
            low = self.all_reduce(local.to(comm).clone(), "min")
            if torch.equal(high, low):
                return False
            for t in tensors:
                if self.backend == "nccl":
                    dist.broadcast(t.data, src=0)
                else:
                    data = t.data.cpu()
                    dist.broadcast(data, src=0)
                    t.data.copy_(data)
        return True

    def close(self) -> None:
        if self.created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _local_rank() -> int | None:
    value = os.environ.get("LOCAL_RANK")
    return int(value) if value is not None and value.isdigit() else None


def _join_group(distributed: bool | None, device: Any) -> _Group:
    """Join (or create, under torchrun) the default process group."""
    import torch.distributed as dist

    if distributed is False or not dist.is_available():
        return _Group()
    if dist.is_initialized():
        return _Group(dist.get_rank(), dist.get_world_size(), False, str(dist.get_backend()))
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        if distributed:
            raise RFMapError(
                "distributed=True needs a process group or torchrun's environment "
                "(WORLD_SIZE, RANK, MASTER_ADDR); run under torchrun --nproc_per_node=P"
            )
        return _Group()
    backend = "nccl" if device.type == "cuda" else "gloo"
    _load_meta_kernels()
    try:
        dist.init_process_group(backend=backend)
    except Exception as exc:
        raise RFMapError(f"cannot start the {backend} process group: {exc}") from exc
    return _Group(dist.get_rank(), dist.get_world_size(), True, backend)


def _load_meta_kernels() -> None:
    """Run one op on the meta device before a process group exists.

    The first meta op imports torch's Python meta kernels (~900 modules: dynamo,
    functional collectives...); imported while a process group exists, they keep it
    alive past ``destroy_process_group``, and gloo's worker threads then outlive it:
    they sometimes free a tensor during interpreter shutdown and abort the process
    ("terminate called without an active exception", a quarter of 2-process runs here).
    """
    import torch

    with contextlib.suppress(Exception):
        torch.empty(1, device="meta").relu()


@contextlib.contextmanager
def process_group(device: str | Any = "auto") -> Iterator[tuple[int, int]]:
    """Join torchrun's process group for several :func:`erf` calls; yield ``(rank, world)``.

    Outside ``torchrun`` this yields ``(0, 1)`` and does nothing.  The group is created
    once (gloo on the CPU, NCCL on CUDA) and destroyed on exit, so calls inside share it.
    """
    chosen = resolve_device(device, _local_rank())
    group = _join_group(None, chosen)
    try:
        yield group.rank, group.world
    finally:
        group.close()


def _comm_device(group: _Group, device: Any) -> Any:
    return device if group.backend == "nccl" else "cpu"

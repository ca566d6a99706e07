"""Saving and loading ERF maps: one ``.npz`` file of maps and their descriptions."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RFMapError
from .result import ERFResult

__all__ = ["load_erf", "save_erf"]


def save_erf(results: ERFResult | Sequence[ERFResult], path: str | os.PathLike[str]) -> Path:
    """Write maps and metadata to an ``.npz`` file, atomically.

    Keys: ``map_0``, ``map_1``, ... (float64 mean maps), ``normalised_0``, ... and
    ``meta``, a JSON string holding the list of ``to_dict()`` descriptions.
    """
    from .._io import atomic_path, check_output_path

    check_output_path(path, (".npz",))
    items = [results] if isinstance(results, ERFResult) else list(results)
    arrays: dict[str, Any] = {}
    for i, result in enumerate(items):
        arrays[f"map_{i}"] = result.map
        arrays[f"normalised_{i}"] = result.normalised
    arrays["meta"] = np.array(json.dumps([r.to_dict() for r in items]))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return Path(path)


def load_erf(path: str | os.PathLike[str]) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """Read a file written by :func:`save_erf`: ``[(map, description), ...]``."""
    file = Path(path)
    if not file.is_file():
        raise RFMapError(f"ERF file not found: {str(file)!r}")
    try:
        with np.load(file, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return [(np.array(data[f"map_{i}"]), meta[i]) for i in range(len(meta))]
    except (OSError, KeyError, ValueError) as exc:
        raise RFMapError(f"{str(file)!r} is not an ERF file written by rfmap: {exc}") from exc

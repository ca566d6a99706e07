"""Writing output files atomically: a file is either complete or absent, never partial."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import RFMapError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "check_output_path"]


def check_output_path(path: str | os.PathLike[str], suffixes: tuple[str, ...] = ()) -> Path:
    """Check that ``path`` can be written: its directory exists and its suffix is known.

    Call this before any expensive work, so a typo fails at once.
    """
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise RFMapError(f"output directory does not exist: {str(parent)!r} (for {str(out)!r})")
    if out.is_dir():
        raise RFMapError(f"output path is a directory, expected a file name: {str(out)!r}")
    if suffixes and out.suffix.lower() not in suffixes:
        raise RFMapError(f"output file must end in {' or '.join(suffixes)}, got {str(out)!r}")
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success only."""
    out = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp" + out.suffix, dir=out.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))

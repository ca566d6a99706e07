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
    """Check that ``path`` can be written: its directory exists and is writable (a file is
    created there and removed), and its suffix is known.

    Call this before any expensive work, so a typo or a read-only place fails at once.
    """
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise RFMapError(f"output directory does not exist: {str(parent)!r} (for {str(out)!r})")
    if out.is_dir():
        raise RFMapError(f"output path is a directory, expected a file name: {str(out)!r}")
    if suffixes and out.suffix.lower() not in suffixes:
        raise RFMapError(f"output file must end in {' or '.join(suffixes)}, got {str(out)!r}")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        raise RFMapError(
            f"cannot write {str(out)!r}: {_reason(exc)} (in the directory {str(parent)!r})"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return out


def _reason(exc: OSError) -> str:
    """``Permission denied``: the OS's words for an error, without the file name."""
    return exc.strerror or type(exc).__name__


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success only.

    An :class:`OSError` while writing (a full disk) becomes an
    :class:`~rfmap.errors.RFMapError`, and the temporary file is removed.
    """
    out = check_output_path(path)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{out.name}.", suffix=".tmp" + out.suffix, dir=out.parent
        )
    except OSError as exc:
        raise RFMapError(f"cannot write {str(out)!r}: {_reason(exc)}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    except OSError as exc:  # a full disk, a quota: nothing half-written stays behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise RFMapError(f"cannot write {str(out)!r}: {_reason(exc)}") from exc
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

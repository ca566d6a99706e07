"""Every command that writes: an output it cannot write is one stderr line and exit 2.

Unwritable places are real (``/sys``, ``/proc``, a read-only directory for non-root
users) or simulated (a read-only file system, a full disk), and nothing half-written
may stay behind.  Standard output that cannot be written (``> /dev/full``) is the same.
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rfmap import _io
from rfmap.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _unwritable_directory() -> Path:
    """A directory nobody may create files in, root included (a kernel file system)."""
    for candidate in ("/sys", "/proc"):
        path = Path(candidate)
        if path.is_dir():
            try:
                fd, name = tempfile.mkstemp(dir=path)
            except OSError:
                return path
            os.close(fd)  # pragma: no cover - a writable /sys: leave it as found
            os.unlink(name)
    pytest.skip("no unwritable directory here")  # pragma: no cover


#: (argv with OUT for the output path, the output's suffix): every command that writes a file.
WRITERS = [
    (["plot", "1,2,4", "--out", "OUT"], ".png"),
    (["animate", "1,2", "--out", "OUT"], ".gif"),
    (["compare", "2,2,2", "1,2,3", "--out", "OUT"], ".png"),
    (["check", "2,2,2", "--out", "OUT"], ".png"),
    (["tcn", "keras-tcn", "--out", "OUT"], ".png"),
    (["explore", "1,2,4", "--out", "OUT"], ".html"),
]


def _argv(argv, out):
    return [str(out) if a == "OUT" else a for a in argv]


@pytest.mark.parametrize(("argv", "suffix"), WRITERS)
def test_an_unwritable_directory_is_one_line_and_exit_2(capsys, argv, suffix):
    out = _unwritable_directory() / f"x{suffix}"
    code, stdout, err = run(capsys, *_argv(argv, out))
    assert code == 2 and stdout == ""
    assert err == f"rfmap: error: cannot write {str(out)!r}: {_reason_for(out)}\n"


def _reason_for(out: Path) -> str:
    try:
        tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent)
    except OSError as exc:
        return f"{exc.strerror} (in the directory {str(out.parent)!r})"
    raise AssertionError("expected an unwritable directory")  # pragma: no cover


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_directory(capsys, tmp_path):  # pragma: no cover - runs as non-root
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, _, err = run(capsys, "plot", "1,2,4", "--out", folder / "x.png")
    finally:
        folder.chmod(0o755)
    assert code == 2 and "Permission denied" in err and err.count("\n") == 1
    assert list(folder.iterdir()) == []


def _read_only(monkeypatch, folder: Path) -> None:
    """Make file creation in ``folder`` fail as on a read-only file system (for root too)."""
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if Path(kwargs.get("dir", ".")) == folder:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder / "tmp"))
        return real(*args, **kwargs)

    monkeypatch.setattr(_io.tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize(("argv", "suffix"), WRITERS)
def test_a_read_only_file_system(capsys, monkeypatch, tmp_path, argv, suffix):
    _read_only(monkeypatch, tmp_path)
    out = tmp_path / f"x{suffix}"
    code, stdout, err = run(capsys, *_argv(argv, out))
    assert code == 2 and stdout == ""
    assert err == (
        f"rfmap: error: cannot write {str(out)!r}: Read-only file system "
        f"(in the directory {str(tmp_path)!r})\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_the_gallery_in_an_unwritable_place(capsys, monkeypatch, tmp_path):
    code, _, err = run(capsys, "gallery", "--out", _unwritable_directory() / "gallery")
    assert code == 2 and err.startswith("rfmap: error: cannot create the gallery directory")
    assert err.count("\n") == 1
    folder = tmp_path / "gallery"
    folder.mkdir()
    _read_only(monkeypatch, folder)
    code, _, err = run(capsys, "gallery", "--out", folder)
    assert code == 2 and "Read-only file system" in err and err.count("\n") == 1
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(("argv", "suffix"), WRITERS[:3])
def test_a_full_disk_leaves_nothing_half_written(capsys, monkeypatch, tmp_path, argv, suffix):
    def replace(src, dst):  # the data is written, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_io.os, "replace", replace)
    out = tmp_path / f"x{suffix}"
    code, _, err = run(capsys, *_argv(argv, out))
    assert code == 2
    assert err == f"rfmap: error: cannot write {str(out)!r}: No space left on device\n"
    assert list(tmp_path.iterdir()) == []  # no temporary file left


class _FullStdout(io.StringIO):
    """A standard output on a full disk: every write fails."""

    def write(self, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize(
    "argv",
    [
        ["map", "1,2,4", "--json"],
        ["map", "1,2", "--size", "3"],
        ["check", "1,2,5"],
        ["design", "--layers", "3", "--json"],
        ["--version"],
        ["map", "--help"],
    ],
)
def test_an_unwritable_standard_output_is_one_line_and_exit_2(capsys, monkeypatch, argv):
    monkeypatch.setattr(sys, "stdout", _FullStdout())
    code = main(argv)  # --version and --help too: argparse swallows the failed write
    err = capsys.readouterr().err
    assert code == 2
    assert err == "rfmap: error: cannot write to standard output: No space left on device\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("argv", [["map", "1,2,4", "--json"], ["map", "1", "--size", "3"]])
def test_dev_full_as_a_user_sees_it(argv):
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "rfmap", *argv], stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert result.returncode == 2
    assert result.stderr == (
        "rfmap: error: cannot write to standard output: No space left on device\n"
    )


def test_a_closed_pipe_is_quiet():
    """``rfmap map --json | head -c 10``: the reader has what it wanted; no traceback."""
    code = (
        "from rfmap.cli import main; "
        "raise SystemExit(main(['map', '1,2,4', '--size', '300', '--json']))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(10) == b'{"dilation'
    process.stdout.close()
    err = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait() == 0 and err == ""


torch = pytest.importorskip("torch", reason="rfmap erf needs PyTorch")


@pytest.mark.parametrize("option", ["--out", "--save-map"])
def test_erf_checks_its_outputs_before_loading_any_model(capsys, tmp_path, option):
    marker = tmp_path / "imported"
    models = tmp_path / "net.py"
    models.write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "import torch\n\ndef build():\n    return torch.nn.Conv2d(3, 2, 3, padding=1)\n"
    )
    suffix = ".png" if option == "--out" else ".npz"
    out = _unwritable_directory() / f"erf{suffix}"
    argv = ["erf", f"{models}:build", "--input-size", "3,16,16", "-n", "1", option, out]
    code, stdout, err = run(capsys, *argv)
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert err.startswith(f"rfmap: error: cannot write {str(out)!r}: ")
    assert not marker.exists()  # failed before the model was even imported

"""Atomic output: a file is complete or absent."""

from __future__ import annotations

import os
import stat

import pytest

from rfmap import RFMapError
from rfmap._io import atomic_path, atomic_write_text, check_output_path


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert list(tmp_path.iterdir()) == [target]


def test_failure_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_normal_permissions(tmp_path):
    target = atomic_write_text(tmp_path / "p.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_check_output_path_errors(tmp_path):
    with pytest.raises(RFMapError, match="output directory does not exist"):
        check_output_path(tmp_path / "missing" / "x.png")
    with pytest.raises(RFMapError, match="is a directory"):
        check_output_path(tmp_path)
    with pytest.raises(RFMapError, match=r"must end in \.png"):
        check_output_path(tmp_path / "x.jpg", (".png",))

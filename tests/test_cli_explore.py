"""``rfmap explore``: writing, opening and serving the page, and its one-line errors."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rfmap.cli import explore as explore_cli
from rfmap.cli import main
from rfmap.html import PRESETS


def embedded_data(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="rfmap-data">(.*?)</script>', page, re.S)
    assert match is not None
    return json.loads(match.group(1))


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_explore_writes_explorer_html_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["explore"], capsys)
    assert code == 0 and err == ""
    assert out.startswith("wrote explorer.html (")
    data = embedded_data((tmp_path / "explorer.html").read_text(encoding="utf-8"))
    assert data["state"]["dilations"] == [1, 1, 2, 3, 5]  # the notebook's Fibonacci


def test_explore_options_reach_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ctx.html"
    code, _, _ = run(
        [
            "explore",
            "1,1,2,4,8,16,1,1",
            "-k",
            "3,3,3,3,3,3,3,1",
            "--size",
            "75",
            "--scale",
            "log",
            "--depth",
            "3",
            "-o",
            str(out),
        ],
        capsys,
    )
    assert code == 0
    state = embedded_data(out.read_text(encoding="utf-8"))["state"]
    assert state == {
        "dilations": [1, 1, 2, 4, 8, 16, 1, 1],
        "kernels": [3] * 7 + [1],
        "strides": [1] * 8,
        "padding": "same",
        "size": 75,
        "ndim": 2,
        "unit": None,
        "scale": "log",
        "depth": 3,
        "slice": None,
    }
    code, _, _ = run(["explore", "--preset", "wavenet-1", "-o", str(out)], capsys)
    state = embedded_data(out.read_text(encoding="utf-8"))["state"]
    assert (state["ndim"], state["padding"], state["kernels"][0], state["size"]) == (
        1,
        "causal",
        2,
        2048,
    )
    code, _, _ = run(["explore", "2,4", "--ndim", "1", "--causal", "-o", str(out)], capsys)
    assert embedded_data(out.read_text(encoding="utf-8"))["state"]["padding"] == "causal"


def test_explore_takes_everything_rfmap_map_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """AxB values, strides, explicit padding, H,W sizes, the unit, 3D and its slice."""
    out = tmp_path / "x.html"
    argv = ["1,2x1,4", "-k", "3x5", "--stride", "1,2,1", "--padding", "1,2x1,4"]
    code, _, _ = run(["explore", *argv, "--size", "33,40", "--unit", "3,5", "-o", str(out)], capsys)
    assert code == 0
    state = embedded_data(out.read_text(encoding="utf-8"))["state"]
    assert {
        k: state[k] for k in ("dilations", "kernels", "strides", "padding", "size", "unit")
    } == {
        "dilations": [1, [2, 1], 4],
        "kernels": [[3, 5]] * 3,
        "strides": [1, 2, 1],
        "padding": [1, [2, 1], 4],
        "size": [33, 40],
        "unit": [3, 5],
    }
    code, _, _ = run(
        ["explore", "1,2,4", "--ndim", "3", "--size", "15", "--slice", "2,3", "-o", str(out)],
        capsys,
    )
    state = embedded_data(out.read_text(encoding="utf-8"))["state"]
    assert (code, state["ndim"], state["slice"]) == (0, 3, [2, 3])
    code, _, _ = run(["explore", "1,2", "--size", "none", "--causal", "-o", str(out)], capsys)
    state = embedded_data(out.read_text(encoding="utf-8"))["state"]
    assert (code, state["size"], state["padding"]) == (0, None, "causal")


def test_list_presets(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["explore", "--list-presets"], capsys)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == [p.id for p in PRESETS]


def test_open_opens_the_file_with_its_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    out = tmp_path / "x.html"
    code, _, _ = run(["explore", "1,2,5", "--size", "33", "-o", str(out), "--open"], capsys)
    assert code == 0
    assert opened == [out.resolve().as_uri() + "#d=1,2,5&k=3&n=33&dim=2&pad=same&scale=auto"]
    monkeypatch.setattr("webbrowser.open", lambda url: False)
    code, _, err = run(["explore", "-o", str(out), "--open"], capsys)
    assert code == 0 and "could not start a web browser; open file://" in err


def test_serve_serves_the_page_until_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fetched: list[bytes] = []

    def serve_once(server: Any) -> None:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        host, port = server.server_address[:2]
        fetched.append(_get(f"http://{host}:{port}/"))
        server.shutdown()
        raise KeyboardInterrupt

    monkeypatch.setattr(explore_cli, "serve_forever", serve_once)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["explore", "2,2,2", "--serve", "--port", "0"], capsys)
    assert code == 0
    assert re.match(r"serving the explorer at http://127\.0\.0\.1:\d+/#d=2,2,2&k=3", out)
    assert err == "stopped\n"
    assert embedded_data(fetched[0].decode())["state"]["dilations"] == [2, 2, 2]
    assert list(tmp_path.iterdir()) == []  # --serve without --out writes nothing


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["1,0,2"], "dilations must be positive integers, got 0 at layer 2"),
        (["1,2x3x4", "--ndim", "2"], "dilations of layer 2 has 3 axes, expected 2"),
        (
            ["1,a"],
            "dilations must be comma-separated integers (use AxB for per-axis values), got '1,a'",
        ),
        (["1,2", "--preset", "powers-2"], "give DILATIONS or --preset, not both"),
        (["1,2", "--causal", "--padding", "valid"], "--causal and --padding valid contradict"),
        (["1,2", "--size", "9,9,9"], "--size has 3 values but the maps are 2D"),
        (["1,2", "--unit", "50,50"], "unit [50, 50] is outside the output grid of shape"),
        (["1,2", "--stride", "2"], "padding='same' needs stride 1"),
        (["1,2", "--slice", "0,1"], "slice is for 3D maps, got a 2D map"),
        (["1,2", "--size", "none", "--unit", "0,0"], "unit has no meaning for an unbounded map"),
        (["1,2", "--size", "2000"], "the explorer draws 2D maps up to size 1024, got 2000"),
        (["4,4", "--size", "9", "--padding", "valid"], "size [9, 9] is too small"),
        (["1,2", "--depth", "3"], "depth must be between 1 and 2, got 3"),
        (["1,2", "--ndim", "4"], "argument --ndim: invalid choice: 4"),
        (["1", "--ndim", "3", "--size", "200"], "the explorer draws 3D maps up to size 128"),
        (["--preset", "nope"], "argument --preset: invalid choice: 'nope'"),
        (["1,2", "--serve", "--port", "70000"], "--port must be between 0 and 65535"),
        (["1,2", "-o", "missing/x.html"], "output directory does not exist"),
        (["1,2", "-o", "x.png"], "output file must end in .html or .htm"),
    ],
)
def test_explore_errors_are_one_line_and_write_nothing(
    argv: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["explore", *argv], capsys)
    assert code == 2 and out == ""
    assert err.startswith("rfmap: error: ") and err.count("\n") == 1, err
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_explore_help_explains_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["explore", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for needle in (
        "rfmap explore 1,2,5 --size 33 --open",
        "--serve",
        "--preset",
        "file://",
        "rfmap map --json",
        "URL fragment",
        "limits of the page",
    ):
        assert needle in text, needle

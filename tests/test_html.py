"""The explorer page as Python builds it (no browser needed).

What the page computes is tested in a real browser in test_explorer_browser.py and the
command line in test_cli_explore.py; here: the page is one self-contained file, its
embedded data, every bad input the issue lists, atomic writing and the local server.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rfmap import RFMapError, receptive_field_size
from rfmap.html import (
    EXPLORER_LIMITS,
    JS_MODULES,
    PRESETS,
    ExplorerPage,
    _script_json,
    explorer,
    explorer_html,
    explorer_server,
)


def embedded_data(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="rfmap-data">(.*?)</script>', page, re.S)
    assert match is not None
    return json.loads(match.group(1))


# --------------------------------------------------------------------------------------
# the page is one self-contained file
# --------------------------------------------------------------------------------------


def test_the_page_is_one_file_with_no_external_resource() -> None:
    page = explorer_html([1, 2, 4])
    assert page.startswith("<!DOCTYPE html>")
    assert "__RFMAP_" not in page  # every placeholder was filled
    for needle in (
        "http://",
        "https://",
        "<script src",
        "@import",
        "url(",
        "fetch(",
        "XMLHttpRequest",
        "WebSocket",
        "//cdn",
    ):
        assert needle not in page, needle
    # the only <link> is the empty data: icon (it stops the browser asking for favicon.ico)
    assert re.findall(r"<link[^>]*>", page) == ['<link rel="icon" href="data:,">']
    # a Content-Security-Policy in the head forbids any request
    head = page.split("</head>", 1)[0]
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', head)
    assert csp is not None
    policy = dict(part.strip().split(" ", 1) for part in csp.group(1).split(";"))
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'none'"
    assert "http" not in csp.group(1) and "*" not in csp.group(1)
    assert page.count("<script") == 2 and page.count("<style>") == 1


def test_the_javascript_modules_are_inlined_in_one_scope() -> None:
    """One module per responsibility, each in its file, all in the page's one script."""
    from importlib import resources

    page = explorer_html([1, 2, 4])
    script = page.rsplit("<script>", 1)[1].split("</script>", 1)[0].strip()
    assert script.startswith("(function () {") and script.endswith("})();")
    web = resources.files("rfmap") / "web"
    positions = []
    for name in JS_MODULES:
        text = (web / name).read_text(encoding="utf-8")
        assert text.strip() in script, name
        positions.append(script.index(text.strip()))
        assert len(text.splitlines()) < 1000, f"{name} has {len(text.splitlines())} lines"
    assert positions == sorted(positions)  # each module after the ones it uses
    # the engine, the gridding port and the state know nothing of the page's DOM
    for name in ("engine.js", "gridding.js", "state.js"):
        assert "document." not in (web / name).read_text(encoding="utf-8"), name


def test_the_embedded_data_is_the_page_description() -> None:
    pg = explorer(
        [1, 1, 2], size=15, kernel_size=[3, 2, 3], ndim=1, padding="causal", scale="log", depth=2
    )
    data = embedded_data(pg.to_html())
    assert data == pg.to_dict()
    assert data["state"] == {
        "dilations": [1, 1, 2],
        "kernels": [3, 2, 3],
        "strides": [1, 1, 1],
        "padding": "causal",
        "size": 15,
        "ndim": 1,
        "unit": None,
        "scale": "log",
        "depth": 2,
        "slice": None,
    }
    assert data["limits"] == EXPLORER_LIMITS
    assert [p["id"] for p in data["presets"]] == [p.id for p in PRESETS]
    assert pg.url_fragment == "#d=1,1,2&k=3,2,3&n=15&dim=1&pad=causal&scale=log&depth=2"


def test_everything_rfmap_map_takes_reaches_the_page() -> None:
    """Per-axis values, strides, explicit padding, a non-square input, the unit, 3D."""
    pg = explorer(
        [1, (2, 1), 4],
        size=(33, 40),
        kernel_size=[3, (3, 5), 3],
        stride=[1, (2, 1), 1],
        padding=[(1, 1), (2, 5), 4],
        unit=(3, 5),
    )
    assert pg.to_dict()["state"] == {
        "dilations": [1, [2, 1], 4],
        "kernels": [3, [3, 5], 3],
        "strides": [1, [2, 1], 1],
        "padding": [1, [2, 5], 4],
        "size": [33, 40],
        "ndim": 2,
        "unit": [3, 5],
        "scale": "auto",
        "depth": None,
        "slice": None,
    }
    assert pg.url_fragment == (
        "#d=1,2x1,4&k=3,3x5,3&s=1,2x1,1&n=33,40&dim=2&pad=1,2x5,4&u=3,5&scale=auto"
    )
    cube = explorer([1, 2, 4], size=15, ndim=3, slice=(2, 4), depth=2)
    assert cube.to_dict()["state"]["slice"] == [2, 4]
    assert cube.url_fragment == "#d=1,2,4&k=3&n=15&dim=3&pad=same&scale=auto&depth=2&slice=2,4"
    unbounded = explorer([1, 2], size=None, padding="valid")
    assert unbounded.url_fragment == "#d=1,2&k=3&n=none&dim=2&pad=valid&scale=auto"
    assert unbounded.to_dict()["state"]["size"] is None


def test_embedded_json_cannot_close_the_script() -> None:
    hostile = {"name": "</script><script>alert(1)</script><!--", "sep": "\u2028"}
    text = _script_json(hostile)
    assert "</" not in text and "<!--" not in text and "\u2028" not in text
    assert json.loads(text) == hostile


def test_presets_are_valid_pages_with_their_published_fields() -> None:
    for p in PRESETS:
        layers = p.layers()
        pg = explorer(
            list(p.dilations),
            p.size,
            p.kernel if isinstance(p.kernel, int) else list(p.kernel),
            p.ndim,
            stride=p.stride if isinstance(p.stride, int) else list(p.stride),
            padding=p.padding if isinstance(p.padding, str) else list(p.padding),
            depth=p.depth,
        )
        assert pg.layers == layers
    by_id = {p.id: p for p in PRESETS}
    expected = {
        "yu-koltun": 67,
        "wavenet-1": 1024,
        "wavenet-3": 3070,
        "powers-3": 81,
        "inception-7x1": 7,
        "stride-then-dilation": 11,
        "resnet-stem": 15,
    }
    for key, field in expected.items():
        p = by_id[key]
        assert receptive_field_size(p.layers()) == field
        assert p.size >= field  # the whole field fits the input
    assert [p.dilations for p in PRESETS[:6]] == [
        (1, 1, 1),
        (2, 2, 2),
        (2, 2, 2, 2),
        (1, 2, 4),
        (1, 1, 2),
        (1, 1, 2, 3, 5),
    ]
    # the strided preset grids because of its stride, the volume preset is 3D
    from rfmap.gridding import check_layers

    assert not check_layers(by_id["stride-then-dilation"].layers()).gridding_free
    assert check_layers(by_id["resnet-stem"].layers()).gridding_free
    assert by_id["volume-1-2-4"].layers()[0].ndim == 3


def test_jupyter_shows_the_page_in_an_iframe() -> None:
    pg = explorer([1, 2])
    shown = pg._repr_html_()
    assert shown.startswith("<iframe srcdoc=") and "sandbox=" in shown
    source = re.search(r'srcdoc="([^"]*)"', shown)
    assert source is not None and html.unescape(source.group(1)) == pg.to_html()


def test_import_loads_neither_torch_nor_matplotlib() -> None:
    code = (
        "import sys, rfmap.html as h; h.explorer_html([1, 2]); "
        "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dilations": [1, 0, 2]}, "dilations must be positive integers, got 0 at layer 2"),
        ({"dilations": []}, "dilations must name at least one layer"),
        ({"dilations": [1, (2, 3, 4)], "ndim": 2}, "dilations of layer 2 has 3 axes, expected 2"),
        ({"dilations": [1, 2], "kernel_size": [3, 3, 3]}, "kernel_size has 3 entries"),
        ({"dilations": [1], "kernel_size": 0}, "kernel_size must be positive integers, got 0"),
        ({"dilations": [1], "ndim": 4}, "ndim must be 1, 2 or 3, got 4"),
        ({"dilations": [1], "padding": "reflect"}, "padding must be one of same, valid, causal"),
        ({"dilations": [1], "stride": 2}, "padding='same' needs stride 1"),
        ({"dilations": [1], "scale": "sqrt"}, "scale must be one of auto, linear, log"),
        ({"dilations": [1], "size": 0}, "size must be a positive integer, got 0"),
        ({"dilations": [1], "size": 1025}, "the explorer draws 2D maps up to size 1024, got 1025"),
        ({"dilations": [1], "size": (20, 1025)}, "2D maps up to size 1024, got [20, 1025]"),
        ({"dilations": [1], "size": 16385, "ndim": 1}, "1D maps up to size 16384"),
        ({"dilations": [1], "size": 129, "ndim": 3}, "3D maps up to size 128, got 129"),
        (
            {"dilations": [4, 4], "size": 9, "padding": "valid"},
            "size [9, 9] is too small for this stack: layer 2 would output [-7, -7]",
        ),
        ({"dilations": [1] * 65}, "the explorer draws at most 64 layers, got 65"),
        ({"dilations": [1], "kernel_size": 17}, "kernel sizes up to 16, got 17 at layer 1"),
        ({"dilations": [1, (1, 2000)]}, "dilations up to 1024, got 2000 at layer 2"),
        ({"dilations": [1], "stride": 17, "padding": 1}, "strides up to 16, got 17 at layer 1"),
        ({"dilations": [1], "padding": 1025}, "paddings up to 1024, got 1025 at layer 1"),
        ({"dilations": [1, 2], "depth": 3}, "depth must be between 1 and 2, got 3"),
        ({"dilations": [1, 2], "depth": 0}, "depth must be between 1 and 2, got 0"),
        ({"dilations": [1, 2], "unit": (9, 21)}, "unit [9, 21] is outside the output grid"),
        ({"dilations": [1], "size": None, "unit": (0, 0)}, "unit has no meaning for an unbounded"),
        (
            {"dilations": [1024] * 2, "size": None},
            "2D maps up to size 1024; the unbounded map of this stack is [4097, 4097]",
        ),
        ({"dilations": [1, 2], "slice": (0, 3)}, "slice is for 3D maps, got a 2D map"),
        ({"dilations": [1], "ndim": 3, "size": 9, "slice": (3, 0)}, "slice axis must be 0, 1 or 2"),
        ({"dilations": [1], "ndim": 3, "size": 9, "slice": (0, 9)}, "between 0 and 8, got 9"),
    ],
)
def test_bad_input_is_one_clear_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(RFMapError) as info:
        explorer(**kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_numpy_integers_are_accepted() -> None:
    np = pytest.importorskip("numpy")
    pg = explorer(
        [1, np.int64(2), np.int32(4)],
        size=np.int64(21),
        kernel_size=np.int32(3),
        ndim=np.int64(2),
        depth=np.int64(2),
    )
    assert embedded_data(pg.to_html())["state"] == {
        "dilations": [1, 2, 4],
        "kernels": [3, 3, 3],
        "strides": [1, 1, 1],
        "padding": "same",
        "size": 21,
        "ndim": 2,
        "unit": None,
        "scale": "auto",
        "depth": 2,
        "slice": None,
    }


def test_save_is_atomic_and_checks_the_path(tmp_path: Path) -> None:
    pg = explorer([1, 2])
    out = pg.save(tmp_path / "page.html")
    assert out.read_text(encoding="utf-8") == pg.to_html()
    with pytest.raises(RFMapError, match=r"must end in \.html or \.htm"):
        pg.save(tmp_path / "page.png")
    with pytest.raises(RFMapError, match="output directory does not exist"):
        pg.save(tmp_path / "missing" / "page.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]  # no leftovers


# --------------------------------------------------------------------------------------
# the local server
# --------------------------------------------------------------------------------------


def _get(url: str, method: str = "GET") -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read(), response.headers["Content-Type"]


def test_the_server_answers_the_page_and_nothing_else() -> None:
    page = explorer_html([1, 2, 4])
    server = explorer_server(page, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        status, body, kind = _get(f"http://{host}:{port}/?x=1")
        assert status == 200 and body.decode() == page and kind == "text/html; charset=utf-8"
        assert _get(f"http://{host}:{port}/", "HEAD")[:2] == (200, b"")
        for path in ("/favicon.ico", "/../etc/passwd", "/explorer.js"):
            with pytest.raises(urllib.error.HTTPError) as info:
                _get(f"http://{host}:{port}{path}")
            assert info.value.code == 404
            info.value.close()
        # a busy port is a one-line error
        with pytest.raises(RFMapError, match=f"cannot serve on 127.0.0.1:{port}"):
            explorer_server(page, port=port)
    finally:
        server.shutdown()
        server.server_close()


def test_page_object_is_frozen() -> None:
    pg = explorer([1, 2])
    assert isinstance(pg, ExplorerPage)
    with pytest.raises(AttributeError):
        pg.size = 3  # type: ignore[misc]

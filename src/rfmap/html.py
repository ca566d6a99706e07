"""The interactive explorer: one self-contained HTML page that makes no network request.

The page is a template (``web/explorer.html``) with its CSS and its JavaScript modules
(:data:`JS_MODULES`: the exact engine, the gridding check, the state and its URL, the
drawing, the side panel, the page) inlined, and the starting view, the presets and the page's limits
embedded with :func:`json.dumps`.  It computes exact path counts in the browser (BigInt
past 2**53) with the same separable algorithm as :mod:`rfmap.paths`, for everything
``rfmap map`` takes (per-axis values, strides, explicit padding, 1D to 3D, an unbounded
input), so every count equals ``rfmap map --json``.

>>> page = explorer([1, (2, 1), 4], size=21)
>>> page.to_dict()["state"]["dilations"]
[1, [2, 1], 4]
>>> html = page.to_html()
>>> html.startswith("<!DOCTYPE html>") and "https://" not in html
True
"""

from __future__ import annotations

import html as _html
import http.server
import json
import numbers
import os
import socketserver
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ._io import atomic_write_text, check_output_path
from .errors import InvalidSpecError, RFMapError
from .plot.maps import FIBONACCI, GALLERY_SCHEDULES, Scale
from .specs import (
    ConvLayer,
    DescribesSchedule,
    ScheduleEntry,
    conv_stack,
    output_sizes,
    receptive_field_size,
)

__all__ = [
    "EXPLORER_LIMITS",
    "JS_MODULES",
    "PRESETS",
    "ExplorerPage",
    "Preset",
    "explorer",
    "explorer_html",
    "explorer_server",
    "stack_explorer",
]

#: What the page accepts (it refuses larger values with a one-line message).  The 2D
#: limit keeps a redraw within a frame; the 1D limit fits WaveNet's three stacks; the 3D
#: limit (per axis) keeps the exported JSON of a volume to a few million counts.
EXPLORER_LIMITS: dict[str, int] = {
    "max_layers": 64,
    "max_kernel": 16,
    "max_dilation": 1024,
    "max_stride": 16,
    "max_padding": 1024,
    "max_size_1d": 16384,
    "max_size_2d": 1024,
    "max_size_3d": 128,
}

#: The page's JavaScript, one module per responsibility, inlined in this order.
JS_MODULES = ("engine.js", "gridding.js", "state.js", "view.js", "panel.js", "page.js")


@dataclass(frozen=True)
class Preset:
    """A named schedule the page offers in its preset menu.

    ``kernel`` and ``stride`` are one value for every layer or one entry per layer (an
    int, or a per-axis tuple); ``padding`` a mode name or one entry per layer.
    """

    id: str
    group: str
    name: str
    dilations: tuple[int | tuple[int, ...], ...]
    kernel: int | tuple[int | tuple[int, ...], ...] = 3
    size: int = 21
    ndim: int = 2
    padding: str | tuple[int | tuple[int, ...], ...] = "same"
    note: str = ""
    depth: int | None = None
    stride: int | tuple[int | tuple[int, ...], ...] = 1

    def layers(self) -> tuple[ConvLayer, ...]:
        """The preset's validated stack."""
        return conv_stack(
            list(self.dilations),
            _listed(self.kernel),
            ndim=self.ndim,
            stride=_listed(self.stride),
            padding=_listed(self.padding),
        )

    def to_dict(self) -> dict[str, Any]:
        """The preset as the page reads it."""
        return {
            "id": self.id,
            "group": self.group,
            "name": self.name,
            "dilations": [_entry(d) for d in self.dilations],
            "kernel": _entry(self.kernel),
            "stride": _entry(self.stride),
            "size": self.size,
            "ndim": self.ndim,
            "padding": _entry(self.padding),
            "note": self.note,
            "depth": self.depth,
        }


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _entry(value: Any) -> Any:
    """A preset or state value as JSON: tuples become lists, recursively."""
    if isinstance(value, tuple | list):
        return [_entry(v) for v in value]
    return value


def _fmt(schedule: Sequence[int]) -> str:
    return "(" + ", ".join(map(str, schedule)) + ")"


def _notebook_presets() -> list[Preset]:
    out = []
    for schedule in GALLERY_SCHEDULES:
        out.append(
            Preset(
                id="nb-" + "-".join(map(str, schedule)),
                group="Seed notebook (21 × 21)",
                name=_fmt(schedule),
                dilations=tuple(schedule),
                note="one of the seed notebook's six figures",
            )
        )
    out.append(
        Preset(
            id="nb-fibonacci-gif",
            group="Seed notebook (21 × 21)",
            name=f"Fibonacci {_fmt(FIBONACCI)}, layer by layer (press ▶)",
            dilations=tuple(FIBONACCI),
            depth=1,
            note="the notebook's animation: one more layer per frame",
        )
    )
    return out


_WAVENET_STACK = tuple(2**i for i in range(10))

#: The page's preset menu.  Receptive fields: powers of 2 (k=3, 6 layers) 127;
#: powers of 3 (k=3) 81, every offset reached exactly once; Yu & Koltun's context
#: module 67 (their Table 1); WaveNet one stack 1024, three stacks 3070.
PRESETS: tuple[Preset, ...] = (
    *_notebook_presets(),
    Preset(
        "fibonacci-8",
        "Sequences",
        "Fibonacci, 8 layers (1, 1, 2, …, 21)",
        (1, 1, 2, 3, 5, 8, 13, 21),
        size=129,
        note="the Fibonacci sequence continued to 8 layers",
    ),
    Preset(
        "powers-2",
        "Sequences",
        "Powers of 2 (1, 2, 4, …, 32)",
        (1, 2, 4, 8, 16, 32),
        size=129,
        note="doubling dilations: gridding-free with kernel 3",
    ),
    Preset(
        "powers-3",
        "Sequences",
        "Powers of 3 (1, 3, 9, 27)",
        (1, 3, 9, 27),
        size=85,
        note="kernel 3 with dilations 3^i reaches every offset exactly once",
    ),
    Preset(
        "hdc-1-2-5",
        "Sequences",
        "HDC example (1, 2, 5)",
        (1, 2, 5),
        size=21,
        note="Wang et al. 2018: a schedule that satisfies the HDC rule",
    ),
    Preset(
        "hdc-2-4-8",
        "Sequences",
        "HDC counter-example (2, 4, 8)",
        (2, 4, 8),
        size=33,
        note="Wang et al. 2018: a common factor of 2 leaves a grid of holes",
    ),
    Preset(
        "yu-koltun",
        "Architectures",
        "Yu & Koltun 2016 context module",
        (1, 1, 2, 4, 8, 16, 1, 1),
        kernel=(3, 3, 3, 3, 3, 3, 3, 1),
        size=75,
        note="Multi-Scale Context Aggregation by Dilated Convolutions, Table 1: "
        "3x3 layers with dilations 1,1,2,4,8,16,1 and a final 1x1; receptive field 67",
    ),
    Preset(
        "wavenet-1",
        "Architectures",
        "WaveNet, one stack (1, 2, …, 512)",
        _WAVENET_STACK,
        kernel=2,
        size=2048,
        ndim=1,
        padding="causal",
        note="causal, kernel 2, dilations 1..512: receptive field 1024",
    ),
    Preset(
        "wavenet-3",
        "Architectures",
        "WaveNet, three stacks",
        _WAVENET_STACK * 3,
        kernel=2,
        size=6144,
        ndim=1,
        padding="causal",
        note="van den Oord et al. 2016: 1..512 repeated three times, receptive field 3070",
    ),
    Preset(
        "inception-7x1",
        "Architectures",
        "Inception v3: a 1x7 then a 7x1 kernel",
        (1, 1),
        kernel=((1, 7), (7, 1)),
        size=21,
        note="Szegedy et al. 2016: a 7x7 field from two one-dimensional kernels, "
        "every cell one path",
    ),
    Preset(
        "stride-then-dilation",
        "Strides and 3D",
        "A stride before a dilation (1, 2): holes",
        (1, 2),
        stride=(2, 1),
        padding=(1, 2),
        size=33,
        note="stride 2, then dilation 2: the effective dilation is 4 > 3, so the field grids; "
        "the unit indexes the 16 x 16 output",
    ),
    Preset(
        "resnet-stem",
        "Strides and 3D",
        "Three stride-2 layers (kernel 3, padding 1)",
        (1, 1, 1),
        stride=2,
        padding=(1, 1, 1),
        size=64,
        note="each stride doubles the step of the layers after it: receptive field 15, no holes",
    ),
    Preset(
        "volume-1-2-4",
        "Strides and 3D",
        "3D (1, 2, 4) on 33 x 33 x 33",
        (1, 2, 4),
        size=33,
        ndim=3,
        note="a 3D map as slices: pick the axis and move through the volume",
    ),
)


@lru_cache(maxsize=1)
def _assets() -> tuple[str, str, str]:
    """The template, the CSS and the JavaScript modules joined in one function scope."""
    web = resources.files("rfmap") / "web"
    template, css = (
        (web / name).read_text(encoding="utf-8") for name in ("explorer.html", "explorer.css")
    )
    modules = "\n".join((web / name).read_text(encoding="utf-8") for name in JS_MODULES)
    return template, css, "(function () {\n" + modules + "\n})();"


def _script_json(data: Any) -> str:
    """JSON that is safe inside ``<script>``: no ``</script>``, ``<!--``, ``/*`` or U+2028."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("/", "\\/")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _collapse(values: tuple[int, ...]) -> int | list[int]:
    return values[0] if len(set(values)) == 1 else list(values)


def _entry_text(entry: object) -> str:
    return "x".join(map(str, entry)) if isinstance(entry, list) else str(entry)


def _entries_text(entries: Sequence[object]) -> str:
    """One entry when all layers agree (it applies to every layer), else one per layer."""
    texts = [_entry_text(e) for e in entries]
    return texts[0] if len(set(texts)) == 1 else ",".join(texts)


@dataclass(frozen=True)
class ExplorerPage(DescribesSchedule):
    """The explorer page opened on one stack; build it with :func:`explorer`.

    ``to_html()`` is the whole page (one file: no external resource, no network),
    ``save(path)`` writes it atomically, and in Jupyter the page displays inline.
    ``size`` is per axis (None: an unbounded input), ``unit`` per axis (None: the centre
    of the output), ``slice`` the ``(axis, index)`` a 3D map opens on (None: through the
    unit along axis 0).
    """

    layers: tuple[ConvLayer, ...]
    size: tuple[int, ...] | None
    unit: tuple[int, ...] | None
    scale: Scale
    depth: int | None = None
    slice: tuple[int, int] | None = None
    presets: tuple[Preset, ...] = field(default=PRESETS, repr=False)

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return self.layers[0].ndim

    def _state(self) -> dict[str, Any]:
        paddings = [layer.padding for layer in self.layers]
        size: Any = None
        if self.size is not None:
            size = _collapse(self.size)
        return {
            "dilations": [_collapse(layer.dilation) for layer in self.layers],
            "kernels": [_collapse(layer.kernel_size) for layer in self.layers],
            "strides": [_collapse(layer.stride) for layer in self.layers],
            "padding": paddings[0]
            if isinstance(paddings[0], str) and len(set(paddings)) == 1
            else [p if isinstance(p, str) else _collapse(p) for p in paddings],
            "size": size,
            "ndim": self.ndim,
            "unit": None if self.unit is None else list(self.unit),
            "scale": self.scale.value,
            "depth": self.depth,
            "slice": None if self.slice is None else list(self.slice),
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything the page embeds: the starting view, the presets, the limits."""
        from . import __version__

        return {
            "version": __version__,
            "state": self._state(),
            "presets": [p.to_dict() for p in self.presets],
            "limits": dict(EXPLORER_LIMITS),
            "seconds_per_frame": 1.0,
        }

    @property
    def url_fragment(self) -> str:
        """The ``#...`` fragment the page writes for this view (a link reproduces it)."""
        state = self._state()
        parts = [
            "d=" + ",".join(_entry_text(d) for d in state["dilations"]),
            "k=" + _entries_text(state["kernels"]),
        ]
        if any(s != 1 for s in state["strides"]):
            parts.append("s=" + _entries_text(state["strides"]))
        size = state["size"]
        parts += [
            "n=" + ("none" if size is None else _entry_text(size).replace("x", ",")),
            f"dim={self.ndim}",
            "pad="
            + (
                state["padding"]
                if isinstance(state["padding"], str)
                else _entries_text(state["padding"])
            ),
        ]
        if self.unit is not None:
            parts.append("u=" + ",".join(map(str, self.unit)))
        parts.append(f"scale={self.scale.value}")
        if self.depth is not None and self.depth != len(self.layers):
            parts.append(f"depth={self.depth}")
        if self.slice is not None:
            parts.append(f"slice={self.slice[0]},{self.slice[1]}")
        return "#" + "&".join(parts)

    def to_html(self) -> str:
        """The complete page: template, inline CSS and JS, data via ``json.dumps``."""
        from . import __version__

        template, css, js = _assets()
        page = template.replace("__RFMAP_VERSION__", _html.escape(__version__))
        page = page.replace("/*__RFMAP_CSS__*/", css, 1)
        page = page.replace("__RFMAP_DATA__", _script_json(self.to_dict()), 1)
        return page.replace("/*__RFMAP_JS__*/", js.replace("</script", "<\\/script"), 1)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the page to ``path`` (``.html``/``.htm``) atomically and return the path."""
        check_output_path(path, (".html", ".htm"))
        return atomic_write_text(path, self.to_html())

    def _repr_html_(self) -> str:
        source = _html.escape(self.to_html(), quote=True)
        return (
            f'<iframe srcdoc="{source}" style="width:100%;height:820px;border:1px solid #d9e1ea;'
            f'border-radius:8px" sandbox="allow-scripts allow-downloads" '
            f'title="rfmap explorer"></iframe>'
        )


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


_LIMITED = (
    ("dilation", "max_dilation", "dilations"),
    ("kernel_size", "max_kernel", "kernel sizes"),
    ("stride", "max_stride", "strides"),
    ("padding", "max_padding", "paddings"),
)


def _check_limits(layers: Sequence[ConvLayer]) -> None:
    """The page's limits, checked in the page's order with the page's messages."""
    limits = EXPLORER_LIMITS
    if len(layers) > limits["max_layers"]:
        raise InvalidSpecError(
            f"the explorer draws at most {limits['max_layers']} layers, got {len(layers)}"
        )
    for i, layer in enumerate(layers):
        for attribute, key, what in _LIMITED:
            values = getattr(layer, attribute)
            if isinstance(values, str):
                continue
            over = next((v for v in values if v > limits[key]), None)
            if over is not None:
                raise InvalidSpecError(
                    f"the explorer takes {what} up to {limits[key]}, got {over} at layer {i + 1}"
                )


def _check_size(size: object, ndim: int) -> tuple[int, ...] | None:
    from .paths import _normalise_size

    sizes = _normalise_size(size, ndim)  # type: ignore[arg-type]
    limit = EXPLORER_LIMITS[f"max_size_{ndim}d"]
    if sizes is not None and max(sizes) > limit:
        given = sizes[0] if _is_int(size) else list(sizes)
        raise InvalidSpecError(f"the explorer draws {ndim}D maps up to size {limit}, got {given}")
    return sizes


def stack_explorer(
    layers: Sequence[ConvLayer],
    size: int | Sequence[int] | None = 21,
    unit: Sequence[int] | None = None,
    *,
    scale: Scale | str = Scale.AUTO,
    depth: int | None = None,
    slice: Sequence[int] | None = None,
) -> ExplorerPage:
    """The explorer page of an already built stack (see :func:`explorer`).

    Raises :class:`~rfmap.errors.RFMapError` for anything the page would refuse, with
    the page's message.
    """
    from .paths import _normalise_unit

    layers = tuple(layers)
    if not layers:
        raise InvalidSpecError("the stack must have at least one layer")
    ndim = layers[0].ndim
    _check_limits(layers)
    sizes = _check_size(size, ndim)
    units: tuple[int, ...] | None = None
    if sizes is None:
        if unit is not None:
            raise InvalidSpecError("unit has no meaning for an unbounded map (size=None)")
        shape = [receptive_field_size(layers, a) for a in range(ndim)]
        limit = EXPLORER_LIMITS[f"max_size_{ndim}d"]
        if max(shape) > limit:
            raise InvalidSpecError(
                f"the explorer draws {ndim}D maps up to size {limit}; the unbounded map of this "
                f"stack is {shape}"
            )
    else:
        out = output_sizes(layers, sizes)[-1]
        if unit is not None:
            units = _normalise_unit(unit, out)
    try:
        scale = Scale(scale)
    except ValueError:
        raise InvalidSpecError(
            f"scale must be one of {', '.join(s.value for s in Scale)}, got {scale!r}"
        ) from None
    if depth is not None and (not _is_int(depth) or not 1 <= depth <= len(layers)):
        raise InvalidSpecError(f"depth must be between 1 and {len(layers)}, got {depth!r}")
    shown = layers if depth is None else layers[: int(depth)]
    return ExplorerPage(
        layers,
        sizes,
        units,
        scale,
        None if depth is None else int(depth),
        _check_slice(slice, shown, sizes),
    )


def _check_slice(
    value: Sequence[int] | None, shown: Sequence[ConvLayer], sizes: tuple[int, ...] | None
) -> tuple[int, int] | None:
    if value is None:
        return None
    ndim = shown[0].ndim
    if ndim != 3:
        raise InvalidSpecError(f"slice is for 3D maps, got a {ndim}D map")
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else []
    if len(items) != 2 or not all(_is_int(v) for v in items):
        raise InvalidSpecError(f"slice must be (axis, index), got {value!r}")
    axis, index = int(items[0]), int(items[1])
    if not 0 <= axis <= 2:
        raise InvalidSpecError(f"slice axis must be 0, 1 or 2, got {axis}")
    n = receptive_field_size(shown, axis) if sizes is None else sizes[axis]
    if not 0 <= index < n:
        raise InvalidSpecError(f"slice index must be between 0 and {n - 1}, got {index}")
    return axis, index


def explorer(
    dilations: Sequence[ScheduleEntry] = FIBONACCI,
    size: int | Sequence[int] | None = 21,
    kernel_size: int | Sequence[ScheduleEntry] = 3,
    ndim: int | None = None,
    *,
    stride: int | Sequence[ScheduleEntry] = 1,
    padding: str | int | Sequence[object] = "same",
    unit: Sequence[int] | None = None,
    scale: Scale | str = Scale.AUTO,
    depth: int | None = None,
    slice: Sequence[int] | None = None,
) -> ExplorerPage:
    """The explorer page, opened on a schedule (the seed notebook's Fibonacci by default).

    The schedule arguments are :func:`rfmap.path_map`'s, so the page opens on the map
    ``rfmap.path_map(dilations, size, kernel_size, ndim, unit, stride=..., padding=...)``.

    Parameters
    ----------
    dilations
        One dilation per layer: an int, or a tuple with one value per axis.
    size
        Input size per axis (an int for a square or a cube, or a tuple); None for an
        unbounded input (the map spans the whole receptive field).
    kernel_size, stride
        One for every layer, or one entry per layer (int or per-axis tuple).
    ndim
        1, 2 or 3 (default: from ``size``/tuples, else 2).
    padding
        ``"same"`` (PyTorch's), ``"valid"``, ``"causal"`` or explicit zero padding (an
        int or per-axis tuple, for every layer or per layer).
    unit
        Output unit, one index per axis, on the output grid (default: its centre).
    scale
        Colour scale: ``"auto"``, ``"linear"`` or ``"log"``.
    depth
        Show only the first ``depth`` layers (the layer slider); default all.
    slice
        For a 3D map, ``(axis, index)`` of the slice to open on.

    Raises :class:`~rfmap.errors.RFMapError` for anything the page would refuse.

    >>> explorer([2, 2, 2], size=15).url_fragment
    '#d=2,2,2&k=3&n=15&dim=2&pad=same&scale=auto'
    >>> explorer([1, 2], size=16, stride=[2, 1], padding=1, unit=(3, 3)).url_fragment
    '#d=1,2&k=3&s=2,1&n=16&dim=2&pad=1&u=3,3&scale=auto'
    """
    if ndim is None and isinstance(size, Sequence) and not isinstance(size, str):
        ndim = len(size)
    layers = conv_stack(dilations, kernel_size, ndim=ndim, stride=stride, padding=padding)
    return stack_explorer(layers, size, unit, scale=scale, depth=depth, slice=slice)


def explorer_html(
    dilations: Sequence[ScheduleEntry] = FIBONACCI,
    size: int | Sequence[int] | None = 21,
    kernel_size: int | Sequence[ScheduleEntry] = 3,
    ndim: int | None = None,
    **kwargs: Any,
) -> str:
    """The explorer page as one HTML string (see :func:`explorer` for the arguments).

    >>> "<script src" in explorer_html([1, 2, 4])
    False
    """
    return explorer(dilations, size, kernel_size, ndim, **kwargs).to_html()


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def explorer_server(page: str, host: str = "127.0.0.1", port: int = 8000) -> http.server.HTTPServer:
    """An HTTP server that answers ``GET /`` with ``page`` (call ``serve_forever()``).

    Only the page is served: any other path is a 404, and the server binds to
    ``host`` (localhost by default).  ``port=0`` picks a free port; read it from
    ``server.server_address``.
    """
    body = page.encode("utf-8")

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "rfmap"

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, send_body: bool) -> None:
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            if path not in ("/", "/index.html", "/explorer.html"):
                self.send_error(404, "only / is served")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    try:
        return _Server((host, port), Handler)
    except OSError as exc:
        raise RFMapError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None

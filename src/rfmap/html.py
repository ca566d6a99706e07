"""The interactive explorer: one self-contained HTML page that makes no network request.

The page is a template (``web/explorer.html``) with its CSS and JavaScript inlined and
the starting view, the presets and the page's limits embedded with :func:`json.dumps`.
It computes exact path counts in the browser (BigInt past 2**53) with the same separable
algorithm as :mod:`rfmap.paths`, so every count equals ``rfmap map --json``.

>>> page = explorer([1, 2, 4], size=21)
>>> page.to_dict()["state"]["dilations"]
[1, 2, 4]
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
from .specs import conv_stack, output_sizes

__all__ = [
    "EXPLORER_LIMITS",
    "PRESETS",
    "ExplorerPage",
    "Preset",
    "explorer",
    "explorer_html",
    "explorer_server",
]

#: What the page accepts (it refuses larger values with a one-line message).  The 2D
#: limit keeps a redraw interactive; the 1D limit fits WaveNet's three stacks.
EXPLORER_LIMITS: dict[str, int] = {
    "max_layers": 64,
    "max_kernel": 16,
    "max_dilation": 1024,
    "max_size_1d": 16384,
    "max_size_2d": 1024,
}

_PADDINGS = ("same", "valid", "causal")


@dataclass(frozen=True)
class Preset:
    """A named schedule the page offers in its preset menu."""

    id: str
    group: str
    name: str
    dilations: tuple[int, ...]
    kernel: int | tuple[int, ...] = 3
    size: int = 21
    ndim: int = 2
    padding: str = "same"
    note: str = ""
    depth: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The preset as the page reads it."""
        return {
            "id": self.id,
            "group": self.group,
            "name": self.name,
            "dilations": list(self.dilations),
            "kernel": self.kernel if isinstance(self.kernel, int) else list(self.kernel),
            "size": self.size,
            "ndim": self.ndim,
            "padding": self.padding,
            "note": self.note,
            "depth": self.depth,
        }


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
)


@lru_cache(maxsize=1)
def _assets() -> tuple[str, str, str]:
    web = resources.files("rfmap") / "web"
    return tuple(  # type: ignore[return-value]
        (web / name).read_text(encoding="utf-8")
        for name in ("explorer.html", "explorer.css", "explorer.js")
    )


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


@dataclass(frozen=True)
class ExplorerPage:
    """The explorer page opened on one schedule; build it with :func:`explorer`.

    ``to_html()`` is the whole page (one file: no external resource, no network),
    ``save(path)`` writes it atomically, and in Jupyter the page displays inline.
    """

    dilations: tuple[int, ...]
    kernels: tuple[int, ...]
    size: int
    ndim: int
    padding: str
    scale: Scale
    depth: int | None = None
    presets: tuple[Preset, ...] = field(default=PRESETS, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Everything the page embeds: the starting view, the presets, the limits."""
        from . import __version__

        return {
            "version": __version__,
            "state": {
                "dilations": list(self.dilations),
                "kernels": list(self.kernels),
                "size": self.size,
                "ndim": self.ndim,
                "padding": self.padding,
                "scale": self.scale.value,
                "depth": self.depth,
            },
            "presets": [p.to_dict() for p in self.presets],
            "limits": dict(EXPLORER_LIMITS),
            "seconds_per_frame": 1.0,
        }

    @property
    def url_fragment(self) -> str:
        """The ``#...`` fragment the page writes for this view (a link reproduces it)."""
        kernels = self.kernels
        parts = [
            "d=" + ",".join(map(str, self.dilations)),
            "k=" + (str(kernels[0]) if len(set(kernels)) == 1 else ",".join(map(str, kernels))),
            f"n={self.size}",
            f"dim={self.ndim}",
            f"pad={self.padding}",
            f"scale={self.scale.value}",
        ]
        if self.depth is not None and self.depth != len(self.dilations):
            parts.append(f"depth={self.depth}")
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


def _int_list(value: object, name: str) -> list[int]:
    if _is_int(value):
        return [int(value)]  # type: ignore[call-overload]
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = list(value)
        if all(_is_int(v) for v in items):
            return [int(v) for v in items]
    raise InvalidSpecError(
        f"{name} must be integers (one per layer; the explorer has no per-axis values), "
        f"got {value!r}"
    )


def explorer(
    dilations: Sequence[int] = FIBONACCI,
    size: int = 21,
    kernel_size: int | Sequence[int] = 3,
    ndim: int = 2,
    *,
    padding: str = "same",
    scale: Scale | str = Scale.AUTO,
    depth: int | None = None,
) -> ExplorerPage:
    """The explorer page, opened on a schedule (the seed notebook's Fibonacci by default).

    Parameters
    ----------
    dilations
        One dilation per layer (the page has the same kernel and dilation on both axes).
    size
        Input size N (an N x N input in 2D).
    kernel_size
        One kernel size for every layer, or one per layer.
    ndim
        1 or 2.
    padding
        ``"same"`` (PyTorch's), ``"valid"`` or ``"causal"``.
    scale
        Colour scale: ``"auto"``, ``"linear"`` or ``"log"``.
    depth
        Show only the first ``depth`` layers (the layer slider); default all.

    Raises :class:`~rfmap.errors.RFMapError` for anything the page would refuse.

    >>> explorer([2, 2, 2], size=15).url_fragment
    '#d=2,2,2&k=3&n=15&dim=2&pad=same&scale=auto'
    """
    dil = _int_list(dilations, "dilations")
    ker = _int_list(kernel_size, "kernel_size")
    if not _is_int(ndim) or ndim not in (1, 2):
        raise InvalidSpecError(f"ndim must be 1 or 2 in the explorer, got {ndim!r}")
    ndim = int(ndim)
    if not isinstance(padding, str) or padding not in _PADDINGS:
        raise InvalidSpecError(f"padding must be one of {', '.join(_PADDINGS)}, got {padding!r}")
    try:
        scale = Scale(scale)
    except ValueError:
        raise InvalidSpecError(
            f"scale must be one of {', '.join(s.value for s in Scale)}, got {scale!r}"
        ) from None
    layers = conv_stack(dil, ker if len(ker) > 1 else ker[0], ndim=ndim, padding=padding)
    kernels = tuple(layer.kernel_size[0] for layer in layers)
    limits = EXPLORER_LIMITS
    if len(layers) > limits["max_layers"]:
        raise InvalidSpecError(
            f"the explorer draws at most {limits['max_layers']} layers, got {len(layers)}"
        )
    for i, layer in enumerate(layers):
        if layer.dilation[0] > limits["max_dilation"]:
            raise InvalidSpecError(
                f"the explorer takes dilations up to {limits['max_dilation']}, "
                f"got {layer.dilation[0]} at layer {i + 1}"
            )
        if layer.kernel_size[0] > limits["max_kernel"]:
            raise InvalidSpecError(
                f"the explorer takes kernel sizes up to {limits['max_kernel']}, "
                f"got {layer.kernel_size[0]} at layer {i + 1}"
            )
    if not _is_int(size) or size < 1:
        raise InvalidSpecError(f"size must be a positive integer, got {size!r}")
    size = int(size)
    max_size = limits[f"max_size_{ndim}d"]
    if size > max_size:
        raise InvalidSpecError(f"the explorer draws {ndim}D maps up to size {max_size}, got {size}")
    output_sizes(layers, (size,) * ndim)
    if depth is not None and (not _is_int(depth) or not 1 <= depth <= len(layers)):
        raise InvalidSpecError(f"depth must be between 1 and {len(layers)}, got {depth!r}")
    return ExplorerPage(
        tuple(layer.dilation[0] for layer in layers),
        kernels,
        size,
        ndim,
        padding,
        scale,
        None if depth is None else int(depth),
    )


def explorer_html(
    dilations: Sequence[int] = FIBONACCI,
    size: int = 21,
    kernel_size: int | Sequence[int] = 3,
    ndim: int = 2,
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

"""A small harness for driving the explorer page in headless Chromium (Playwright).

``launch_chromium`` starts Debian's ``chromium`` (never a downloaded browser);
:class:`Tab` wraps one page and records every console message, page error and
request, so a test can assert that nothing left the page and nothing went wrong.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: Where tests leave screenshots and exported files for a person to look at.
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def launch_chromium(playwright: Any) -> Any:
    """A headless Chromium browser with a fresh temporary profile."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def _entry(value: Any) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple | list) else str(value)


def _entries(value: Any) -> str:
    """One value for every layer, or one entry (int, per-axis tuple or name) per layer."""
    if isinstance(value, int | str):
        return str(value)
    texts = [_entry(v) for v in value]
    return texts[0] if len(set(texts)) == 1 else ",".join(texts)


def fragment(
    dilations: Any,
    kernel: Any = 3,
    size: Any = 21,
    ndim: int = 2,
    padding: Any = "same",
    scale: str = "auto",
    depth: int | None = None,
    *,
    stride: Any = 1,
    unit: Any = None,
    slice: Any = None,
) -> str:
    """The page's canonical URL fragment for a view (what rfmap.html writes)."""
    parts = [f"d={','.join(_entry(d) for d in dilations)}", f"k={_entries(kernel)}"]
    strides = _entries(stride)
    if set(strides.split(",")) != {"1"}:
        parts.append(f"s={strides}")
    if size is None:
        n = "none"
    elif isinstance(size, int) or len(set(size)) == 1:
        n = str(size if isinstance(size, int) else size[0])
    else:
        n = ",".join(map(str, size))
    parts += [f"n={n}", f"dim={ndim}", f"pad={_entries(padding)}"]
    if unit is not None:
        parts.append("u=" + ",".join(map(str, unit)))
    parts.append(f"scale={scale}")
    if depth is not None and depth != len(dilations):
        parts.append(f"depth={depth}")
    if slice is not None:
        parts.append(f"slice={slice[0]},{slice[1]}")
    return "#" + "&".join(parts)


class Tab:
    """One browser page on the explorer, with everything it logs and requests."""

    def __init__(self, browser: Any, url: str, **context: Any) -> None:
        self.url = url
        self.context = browser.new_context(accept_downloads=True, **context)
        self.page = self.context.new_page()
        self.console: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.console.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

    # -- navigation ---------------------------------------------------------------------
    def open(self, frag: str = "") -> Tab:
        """Load the page (with a fragment) and wait until it has drawn."""
        self.page.goto(self.url + frag)
        self.page.wait_for_function("() => window.rfmapExplorer !== undefined")
        return self

    def show(self, frag: str) -> str | None:
        """Switch the open page to ``frag`` (as a user editing the address bar would).

        Returns the page's error message, or None when the view was drawn.
        """
        if self.page.evaluate("() => rfmapExplorer.hash()") == frag:
            return self.error()
        self.page.evaluate("() => { window.__rfmapSeen = rfmapExplorer.error(); }")
        self.page.evaluate("h => { location.hash = h; }", frag)
        self.page.wait_for_function(
            "h => rfmapExplorer.hash() === h || rfmapExplorer.error() !== null", arg=frag
        )
        return self.error()

    # -- reading the page -----------------------------------------------------------------
    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def error(self) -> str | None:
        return self.js("() => rfmapExplorer.error()")

    def state(self) -> dict[str, Any]:
        return self.js("() => rfmapExplorer.state()")

    def map_json(self, counts: bool = True) -> str | None:
        return self.js("c => rfmapExplorer.mapJSON(c)", counts)

    def hash(self) -> str:
        return self.js("() => location.hash")

    # -- the checks every test ends with ----------------------------------------------------
    def foreign_requests(self) -> list[str]:
        """Requests other than the page itself (blob:/data: never leave the page)."""
        base = self.url.split("#", 1)[0]
        return [
            u
            for u in self.requests
            if u.split("#", 1)[0] != base and not u.startswith(("blob:", "data:"))
        ]

    def console_errors(self) -> list[str]:
        return [text for kind, text in self.console if kind in ("error", "warning")] + self.errors

    def close(self) -> None:
        self.context.close()

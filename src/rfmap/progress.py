"""Progress bars for long runs, drawn by tqdm when it is installed (optional).

:func:`progress` wraps an iterable; :class:`ProgressBar` is the same bar driven by
hand (``update``) or by a ``callback(done, total)`` such as :func:`rfmap.erf.erf`'s
``progress`` argument.  ``tqdm.auto`` draws a widget in notebooks and a text bar in a
terminal.  Without tqdm (``pip install tqdm``, or the ``torch`` extra) there is no bar
and nothing fails: :func:`available` says which.

>>> list(progress(range(3), enabled=False))
[0, 1, 2]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import IO, Any, TypeVar

__all__ = ["ProgressBar", "available", "progress"]

T = TypeVar("T")


def available() -> bool:
    """Whether tqdm can be imported (a bar can be drawn)."""
    return _tqdm_class() is not None


def _tqdm_class() -> Any:
    """``tqdm.auto.tqdm``, or ``None`` without tqdm."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


class ProgressBar:
    """A progress bar (tqdm's) that is a no-op when disabled or when tqdm is missing.

    ``total`` is the number of steps (``None``: unknown), ``desc`` the label, ``unit`` the
    name of a step; the bar goes to ``file`` (default: stderr).  Use it as a context
    manager, call :meth:`update` per step, or pass it as a ``callback(done, total)``.

    >>> with ProgressBar(3, enabled=False) as bar:
    ...     bar.update(2)
    ...     bar(3, 3)
    >>> bar.done, bar.drawn
    (3, False)
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        desc: str | None = None,
        unit: str = "it",
        enabled: bool = True,
        file: IO[str] | None = None,
    ) -> None:
        self.done = 0
        self.total = total
        self._options = {"desc": desc, "unit": unit, "file": file}
        self._tqdm = _tqdm_class() if enabled else None
        self._bar: Any = None

    @property
    def drawn(self) -> bool:
        """Whether a bar is shown (enabled, tqdm installed, and a step was counted)."""
        return self._bar is not None

    def _show(self) -> Any:
        """The tqdm bar, made at the first step (when a callback has told the total)."""
        if self._bar is None and self._tqdm is not None:
            self._bar = self._tqdm(
                total=self.total, dynamic_ncols=True, leave=True, **self._options
            )
        return self._bar

    def update(self, steps: int = 1) -> None:
        """Advance the bar by ``steps``."""
        self.done += steps
        bar = self._show()
        if bar is not None:
            bar.update(steps)

    def __call__(self, done: int, total: int | None = None) -> None:
        """Set the bar to ``done`` of ``total`` steps (a ``progress`` callback)."""
        if total is not None and total != self.total:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
                self._bar.refresh()
        self.update(done - self.done)

    def close(self) -> None:
        """Finish the bar (leaves its last state on screen)."""
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def progress(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    enabled: bool = True,
    file: IO[str] | None = None,
) -> Iterator[T]:
    """Yield the items of ``iterable`` while a bar counts them (see :class:`ProgressBar`).

    ``total`` defaults to ``len(iterable)`` when it has one.
    """
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with ProgressBar(total, desc=desc, unit=unit, enabled=enabled, file=file) as bar:
        for item in iterable:
            yield item
            bar.update()

"""The package surface: exports, lazy heavy imports, version."""

from __future__ import annotations

import subprocess
import sys

import rfmap


def test_all_is_sorted_and_complete():
    import types

    assert list(rfmap.__all__) == sorted(rfmap.__all__)
    for name in rfmap.__all__:
        assert getattr(rfmap, name) is not None, name
    public = {
        name
        for name, value in vars(rfmap).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in {"annotations", "importlib", "Any"}
    }
    assert public <= set(rfmap.__all__)


def test_plain_import_loads_neither_torch_nor_matplotlib():
    heavy = ("torch", "matplotlib", "PIL", "jax", "flax", "keras")
    code = (
        "import sys, rfmap, rfmap.frontends; rfmap.path_map([1, 2], 9); "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_cli_import_is_light():
    code = (
        "import sys, rfmap.cli; rfmap.cli.build_parser(); "
        "print(any(m in sys.modules for m in ('torch', 'jax', 'keras')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_version():
    from importlib.metadata import version

    assert rfmap.__version__ == version("rfmap")


def test_unknown_attribute_is_an_attribute_error():
    try:
        rfmap.does_not_exist  # noqa: B018
    except AttributeError as exc:
        assert "does_not_exist" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_no_export_shadows_a_submodule():
    """``rfmap.X`` must stay the module ``rfmap.X`` (monkeypatch paths, attribute access)."""
    import importlib
    import pkgutil

    modules = {info.name for info in pkgutil.iter_modules(rfmap.__path__)}
    for name in modules & set(rfmap.__all__):
        assert getattr(rfmap, name) is importlib.import_module(f"rfmap.{name}"), name

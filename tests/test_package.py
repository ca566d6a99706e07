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
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(rfmap.__all__)


def _submodules() -> set[str]:
    import pkgutil

    return {i.name for i in pkgutil.iter_modules(rfmap.__path__) if not i.name.startswith("_")}


def test_dir_is_all_plus_the_submodules():
    public = {name for name in dir(rfmap) if not name.startswith("_")}
    assert public == set(rfmap.__all__) - {"__version__"} | _submodules()
    assert "__version__" in dir(rfmap) and "__doc__" in dir(rfmap)
    for leaked in ("Any", "annotations", "importlib"):  # what dir() showed before
        assert not hasattr(rfmap, leaked), leaked


def test_every_submodule_is_an_attribute_loaded_on_first_use():
    code = (
        "import sys, types, rfmap; names = dir(rfmap); "
        "before = [n for n in ('rfmap.plot', 'rfmap.report') if n in sys.modules]; "
        "mods = [getattr(rfmap, n) for n in names if not n.startswith('_')]; "
        "after = [n for n in ('rfmap.plot', 'rfmap.report') if n in sys.modules]; "
        "print(before, after, all(isinstance(getattr(rfmap, n), types.ModuleType) "
        "for n in ('plot', 'report', 'trace', 'cli')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[] ['rfmap.plot', 'rfmap.report'] True"


def test_design_and_tcn_are_modules_that_can_be_called():
    import types

    assert isinstance(rfmap.design, types.ModuleType) and isinstance(rfmap.tcn, types.ModuleType)
    from rfmap.design import design
    from rfmap.tcn import tcn

    assert rfmap.design_schedules is design
    assert rfmap.design(4).candidates[0].dilations == (1, 3, 9, 27)
    assert rfmap.design(4).to_dict() == rfmap.design_schedules(4).to_dict()
    assert rfmap.tcn("keras-tcn").receptive_field == tcn("keras-tcn").receptive_field == 253


def _imports(path, module: str) -> list[tuple[str, int]]:
    """The absolute names a module's code imports, with their line numbers."""
    import ast

    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def test_no_module_outside_the_cli_imports_the_cli():
    """The CLI renders and prints; the library never reaches back into it (no circle)."""
    from pathlib import Path

    root = Path(rfmap.__file__).parent
    offenders = []
    checked = 0
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module == "rfmap.cli" or module.startswith("rfmap.cli.") or module == "rfmap.__main__":
            continue  # the CLI itself, and `python -m rfmap`, which runs it
        checked += 1
        for name, line in _imports(path, module):
            if name == "rfmap.cli" or name.startswith("rfmap.cli."):
                offenders.append(f"{path.relative_to(root)}:{line} imports {name}")
    assert checked > 20 and offenders == []


def test_the_import_reader_sees_relative_and_absolute_cli_imports(tmp_path):
    """The checker above can fail: it resolves every spelling of importing the CLI."""
    source = tmp_path / "x.py"
    source.write_text(
        "from .cli.gridding import a\nfrom . import cli\nimport rfmap.cli\n"
        "def f():\n    from ..cli import main\n"
    )
    names = {name for name, _ in _imports(source, "rfmap.plot.x")}
    assert {"rfmap.plot.cli.gridding", "rfmap.plot.cli", "rfmap.cli", "rfmap.cli.main"} <= names
    source.write_text("from .cli.gridding import a\nfrom . import cli\n")
    names = {name for name, _ in _imports(source, "rfmap.x")}
    assert {"rfmap.cli.gridding", "rfmap.cli"} <= names


def test_plain_import_loads_neither_torch_nor_matplotlib():
    heavy = ("torch", "matplotlib", "PIL", "jax", "flax", "keras", "onnx", "onnxruntime")
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
        "print(any(m in sys.modules for m in ('torch', 'jax', 'keras', 'onnx', 'onnxruntime')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_onnx_frontend_loads_onnxruntime_only_to_measure():
    code = (
        "import sys, rfmap.frontends.onnx; "
        "print('onnxruntime' in sys.modules, 'torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False False"


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

"""The README's Python examples and CLI claims stay true."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_examples():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    test = doctest.DocTestParser().get_doctest("\n".join(blocks), {}, "README", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 5
    assert result.failed == 0


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make gallery", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^gallery:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_images_exist():
    text = (ROOT / "README.md").read_text()
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (ROOT / image).is_file(), image


def test_readme_cli_example_output(capsys):
    from rfmap.cli import main

    text = (ROOT / "README.md").read_text()
    block = text.split("$ rfmap map 1,2,4 --size 17\n", 1)[1].split("\n...", 1)[0]
    assert main(["map", "1,2,4", "--size", "17"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(block)


def test_the_install_line_names_what_the_examples_and_make_test_need():
    """A new user's trial: the examples needed extras and downloads the README did not name."""
    text = (ROOT / "README.md").read_text()
    install = text.split("## Install", 1)[1].split("\n## ", 1)[0]
    setup = text.split("## Install", 1)[0]
    if "torchvision.models:" in text:
        assert re.search(r"\.\[[a-z,]*vision", install), "torchvision examples need [vision]"
    if "--sample-images" in text:
        assert re.search(r"\.\[[a-z,]*images", install), "--sample-images needs [images]"
    makefile = (ROOT / "Makefile").read_text()
    if "sudo" in makefile.replace("SUDO", "sudo"):
        assert "sudo apt-get" in setup, "make test may run sudo apt-get: say so up front"
    if "CUDA build" in makefile:
        assert "6 GB" in setup and "CUDA" in setup, "make test downloads PyTorch's CUDA build"
    extras = re.findall(r"^(\w+) = \[", (ROOT / "pyproject.toml").read_text(), re.M)
    for extra in re.findall(r"\.\[([a-z,]+)\]", install):
        assert set(extra.split(",")) <= set(extras), extra

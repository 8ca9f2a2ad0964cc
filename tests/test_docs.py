"""The examples in the package's docstrings run and print what they claim."""

import doctest
import importlib
import pkgutil

import pytest

import polybook

MODULES = sorted(m.name for m in pkgutil.iter_modules(polybook.__path__, "polybook.") if m.name != "polybook.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_package_docstring_example():
    assert doctest.testmod(polybook).failed == 0


def _chapter_titles():
    import json
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    titles = {}
    for entry in toc["chapters"]:
        path = root / (entry["file"] + ".ipynb")
        if path.exists():
            cells = json.loads(path.read_text())["cells"]
            lines = (line for c in cells if c["cell_type"] == "markdown" for line in "".join(c["source"]).splitlines())
            titles[path.name] = next(line[2:].strip() for line in lines if line.startswith("# "))
    return root, titles


def test_readme_lists_every_chapter_by_its_own_title():
    """A chapter's title says what the book finds; the README must not keep an older one."""
    root, titles = _chapter_titles()
    readme = (root / "README.md").read_text()
    assert titles, "no chapters found"
    for name, title in titles.items():
        plain = title.replace("$", "")
        assert f"[{plain}](book/{name})" in readme, f"README.md lacks the link [{plain}](book/{name})"

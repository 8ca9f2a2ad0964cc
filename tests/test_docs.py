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

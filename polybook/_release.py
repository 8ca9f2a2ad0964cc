"""The release the chapters' setup cells install, in one place.

``VERSION`` is the package version (``pyproject.toml`` reads it from here) and ``TAG`` the git tag
a release of it carries. ``REPOSITORY`` is where the setup cell installs it from. After changing any
of them, run ``python scripts/sync_setup_cells.py`` to rewrite every chapter's setup cell (and the
book's repository link); ``tests/test_colab.py`` fails while a notebook is out of step.

This file is read without importing polybook (by setuptools, which needs ``VERSION`` to be a string
literal, and by the sync script), so it holds plain assignments only.
"""

VERSION = "0.1.0"
# The git ref the setup cell installs: a release's tag. (Any tag or commit of REPOSITORY works.)
TAG = "v" + VERSION
REPOSITORY = "https://github.com/polybook/polybook"

"""Execute notebooks in place, top to bottom, so their committed outputs are fresh.

    python scripts/execute_notebook.py book/collisions.ipynb [more.ipynb ...]

Uses the current Python's kernel; prints each notebook's wall time on stderr.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: str, timeout: int = 1800) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    folder = str(Path(path).resolve().parent)  # run where nbval runs it: beside the notebook
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": folder}}).execute()
    # Drop the widget state: the published page has no kernel, and the state would make it load the
    # widget manager from a CDN. Each explorer has a static figure of its default instead.
    nb.metadata.pop("widgets", None)
    seconds = time.perf_counter() - start
    nbformat.write(nb, path)
    return seconds


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python scripts/execute_notebook.py NOTEBOOK.ipynb [...]")
    for p in sys.argv[1:]:
        print(f"{p}: executed in {execute(p):.1f} s", file=sys.stderr)

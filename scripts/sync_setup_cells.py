"""Write the one setup cell into every chapter, from the release named in polybook/_release.py.

    python scripts/sync_setup_cells.py           # rewrite what differs, say what changed
    python scripts/sync_setup_cells.py --check   # change nothing; exit 1 if anything differs

A chapter's first code cell is its setup cell: in a fresh runtime (Colab) it installs the pinned
release of polybook, ``polybook @ git+REPOSITORY@TAG``, and prints the device report. It keeps the
runtime's torch build exactly as it is, and ``POLYBOOK_SOURCE`` (a path to a checkout, a wheel, or
any pip requirement) installs that instead of the release, as ``scripts/colab_runtime.py`` does to
test a checkout. The setup cell is tagged ``remove-cell`` and the import cell after it
``hide-input``: both are for readers who run the notebook, not for the HTML book.

The script also points the book's repository link (``repository: url:`` in ``_config.yml``, used
by the launch and repository buttons) at ``REPOSITORY``. Cell ids, other metadata and outputs are
kept; a changed setup cell prints the same as before, so the committed outputs stay valid.
"""

from __future__ import annotations

import argparse
import json
import re
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE_FILE = ROOT / "polybook" / "_release.py"
CONFIG_FILE = ROOT / "_config.yml"
SETUP_MARKER = "# Setup"  # how the first line of a setup cell starts
SETUP_TAG = "remove-cell"
IMPORT_TAG = "hide-input"

SETUP_TEMPLATE = '''\
# Setup for Colab and other fresh runtimes: install polybook, the pinned release {tag}, when it is
# missing; a no-op where it is installed. The runtime's own torch build is kept as it is.
# POLYBOOK_SOURCE=/path/to/checkout (or any pip requirement) installs that instead.
# Written by scripts/sync_setup_cells.py from polybook/_release.py: change those, not this cell.
try:
    import polybook as pb
except ImportError:
    import importlib.metadata, os, subprocess, sys
    source = os.environ.get("POLYBOOK_SOURCE") or "polybook @ git+{repository}@{tag}"
    try:
        keep = ["torch==" + importlib.metadata.version("torch")]
    except importlib.metadata.PackageNotFoundError:
        keep = []
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", source, *keep])
    import polybook as pb
print(pb.device_report())'''


def release() -> dict[str, str]:
    """``VERSION``, ``TAG`` and ``REPOSITORY`` from polybook/_release.py (without importing polybook)."""
    ns = runpy.run_path(str(RELEASE_FILE))
    return {k: ns[k] for k in ("VERSION", "TAG", "REPOSITORY")}


def setup_cell_source(rel: dict[str, str] | None = None) -> str:
    """The setup cell every chapter starts with."""
    rel = rel or release()
    return SETUP_TEMPLATE.format(tag=rel["TAG"], repository=rel["REPOSITORY"].rstrip("/"))


def notebooks() -> list[Path]:
    """Every notebook of the book."""
    return sorted((ROOT / "book").glob("*.ipynb"))


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _ensure_tag(cell: dict, tag: str) -> bool:
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    if tag in tags:
        return False
    tags.append(tag)
    return True


def sync_notebook(nb: dict, source: str) -> list[str]:
    """Make ``nb``'s setup and import cells right, in place; return what was changed (empty: nothing)."""
    changes: list[str] = []
    code = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]
    if not code:
        return ["no code cell: nothing to set up"]
    first = nb["cells"][code[0]]
    if not _source(first).startswith(SETUP_MARKER):
        raise ValueError(f"the first code cell does not start with {SETUP_MARKER!r}: {_source(first)[:60]!r}")
    if _source(first) != source:
        first["source"] = _lines(source)
        changes.append("setup cell rewritten")
    if _ensure_tag(first, SETUP_TAG):
        changes.append(f"setup cell tagged {SETUP_TAG}")
    if len(code) > 1 and _ensure_tag(nb["cells"][code[1]], IMPORT_TAG):
        changes.append(f"import cell tagged {IMPORT_TAG}")
    return changes


def dump(nb: dict) -> str:
    """A notebook as nbformat writes it (so an untouched notebook round-trips byte for byte)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def config_text(text: str, repository: str) -> str:
    """``_config.yml``'s text with ``repository: url:`` set to ``repository``."""
    return re.sub(r"(?m)^(repository:\s*\n(?:[ \t]+.*\n)*?[ \t]+url:[ \t]*)\S+", lambda m: m.group(1) + repository, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file differs")
    args = parser.parse_args(argv)
    rel = release()
    source = setup_cell_source(rel)
    stale = []
    for path in notebooks():
        text = path.read_text()
        nb = json.loads(text)
        changes = sync_notebook(nb, source)
        if changes:
            stale.append(path)
            print(f"{path.relative_to(ROOT)}: {'; '.join(changes)}")
            if not args.check:
                path.write_text(dump(nb))
    config = CONFIG_FILE.read_text()
    new_config = config_text(config, rel["REPOSITORY"])
    if new_config != config:
        stale.append(CONFIG_FILE)
        print(f"{CONFIG_FILE.name}: repository url set to {rel['REPOSITORY']}")
        if not args.check:
            CONFIG_FILE.write_text(new_config)
    if not stale:
        print(f"every setup cell installs polybook {rel['TAG']} from {rel['REPOSITORY']}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())

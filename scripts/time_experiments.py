"""Time named experiments at book scale on this machine's CPU and store the wall times.

    python scripts/time_experiments.py [--only NAME ...] [--out book/results/book-runtimes.json]

Without ``--only`` every experiment is timed; with it only those, and the other entries of an
existing file are kept. Each entry records the hash of the config it timed, so the "reproduce at
paper scale" appendix can tell a timing made for an older config from a current one. Time on a
quiet machine: other work on the same cores inflates the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from polybook import __version__
from polybook.experiments import EXPERIMENTS, all_experiments, config_hash, run_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="book/results/book-runtimes.json")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="time only these experiments")
    args = parser.parse_args()
    all_experiments()
    names = sorted(EXPERIMENTS) if not args.only else args.only
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(sorted(EXPERIMENTS))}")
    out = Path(args.out)
    old = json.loads(out.read_text()) if args.only and out.exists() else {}
    seconds, hashes = dict(old.get("seconds", {})), dict(old.get("config_hash", {}))
    for name in names:
        start = time.perf_counter()
        run_experiment(name, "book", device="cpu", progress=False)
        seconds[name] = round(time.perf_counter() - start, 1)
        hashes[name] = config_hash(name, EXPERIMENTS[name].scales["book"])
        print(f"{name}: {seconds[name]} s", flush=True)
    record = {
        "seconds": dict(sorted(seconds.items())),
        "config_hash": dict(sorted(hashes.items())),
        "provenance": {
            "command": "python scripts/time_experiments.py" + (" --only " + " ".join(names) if args.only else ""),
            "polybook": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()

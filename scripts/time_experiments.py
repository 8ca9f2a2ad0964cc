"""Time every named experiment at book scale on this machine's CPU and store the wall times.

    python scripts/time_experiments.py [--out book/results/book-runtimes.json]

The "reproduce at paper scale" appendix shows these measured times next to each experiment.
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
from polybook.experiments import EXPERIMENTS, _load_all, run_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="book/results/book-runtimes.json")
    args = parser.parse_args()
    _load_all()
    seconds = {}
    for name in sorted(EXPERIMENTS):
        start = time.perf_counter()
        run_experiment(name, "book", device="cpu", progress=False)
        seconds[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: {seconds[name]} s", flush=True)
    record = {
        "seconds": seconds,
        "provenance": {
            "command": "python scripts/time_experiments.py",
            "polybook": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()

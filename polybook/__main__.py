"""Command line: ``python -m polybook list`` and ``python -m polybook run EXPERIMENT ...``.

Exit status: 0 done; 2 bad input (unknown experiment or key, bad value, an output folder that
cannot be written, a run or benchmark size too big for the device's memory, a malformed
``POLYBOOK_SMOKE_STEPS``), checked before any training, one line on stderr; 1 the run diverged
(NaN or infinite loss) or its result could not be written; 130 interrupted with Ctrl-C
(finished pieces are kept).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2, no usage dump
        self.exit(2, f"polybook: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m polybook", description="Run the experiments of the polybook tutorial.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the named experiments")
    run = sub.add_parser(
        "run", help="run one experiment and write DIR/result.json",
        description=_run_description(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("experiment", help="the experiment's name (see the list above or `python -m polybook list`)")
    run.add_argument("--scale", choices=("book", "paper"), default="book",
                     help="book: minutes on 2 CPU cores (default); paper: the paper's own setting, for a GPU")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config field; repeatable; lists are comma-separated (m=64,128); "
                          "`python -m polybook show NAME` prints the fields")
    run.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                     help="where to train; auto (default) picks cuda, then mps, then cpu")
    run.add_argument("--seed", type=int, default=None, help="override the config's seed (0..2^62)")
    run.add_argument("--out", default=None, metavar="DIR",
                     help="write DIR/result.json (and DIR/pieces/ for sweeps: re-run the same command to "
                          "resume); without --out the results are printed as JSON")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    bench = sub.add_parser("bench", help="time the training step against a plain implementation")
    bench.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="cpu")
    bench.add_argument("--sizes", default=None, metavar="IxNxM,...",
                       help="comma-separated sizes, e.g. 16x64x128,16x256x4096 (default: the standard set)")
    bench.add_argument("--min-seconds", type=float, default=1.0, help="time each measurement at least this long")
    bench.add_argument("--end-to-end", action="store_true",
                       help="time whole runs: `run collisions --scale book` against the plain baseline, where the "
                            "time goes, and the run beside a busy competitor (a few minutes)")
    bench.add_argument("--no-competitor", action="store_true", help="with --end-to-end: skip the busy-competitor run")
    show = sub.add_parser("show", help="print an experiment's config at a scale")
    show.add_argument("experiment")
    show.add_argument("--scale", choices=("book", "paper"), default="book")
    return p


def _run_description() -> str:
    from . import experiments

    known = experiments.all_experiments()
    width = max(len(k) for k in known)
    names = "\n".join(f"  {k:<{width}}  {e.summary}" for k, e in known.items())
    return (
        "Run one named experiment and record its numbers with their config and provenance.\n\n"
        f"experiments:\n{names}\n\n"
        "scales: book (fits CI's 2 CPU cores) and paper (the paper's setting; on a CPU it warns with\n"
        "a runtime estimate). With --out DIR the record goes to DIR/result.json (strict JSON, written\n"
        "atomically, with a checksum); sweeps keep each finished piece in DIR/pieces/ and a repeated\n"
        "command resumes from them. Exit status: 0 done, 2 bad input (checked before training),\n"
        "1 diverged or not written, 130 interrupted."
    )


def _parse_sizes(text: str) -> list[tuple[int, int, int]]:
    sizes = []
    for part in text.split(","):
        bits = part.lower().split("x")
        if len(bits) != 3 or not all(b.isascii() and b.isdigit() and int(b) > 0 for b in bits):
            raise ValueError(f"sizes must look like 16x64x128 (instances x n x m, positive), got {part!r}")
        sizes.append(tuple(int(b) for b in bits))
    return sizes


def _check_smoke_env() -> None:
    """Refuse a malformed smoke-test variable before anything reads it (``ValueError`` naming it)."""
    from .experiments import SMOKE_ENV, smoke_steps

    try:
        smoke_steps()
    except ValueError as err:
        if SMOKE_ENV in str(err):
            raise
        raise ValueError(f"{SMOKE_ENV} must be a positive integer when set, got {os.environ[SMOKE_ENV]!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before the command started: nothing to keep
        print("polybook: interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    try:
        _check_smoke_env()
    except ValueError as err:
        print(f"polybook: error: {err}", file=sys.stderr)
        return 2
    args = _parser().parse_args(argv)
    from . import experiments

    try:
        if args.command == "list":
            known = experiments.all_experiments()
            width = max(len(k) for k in known)
            for name, exp in known.items():
                print(f"{name:<{width}}  {exp.summary}")
            return 0
        if args.command == "bench":
            from .bench import BENCH_SIZES, end_to_end, format_table, run_benchmark

            if args.end_to_end:
                print(end_to_end(competitor=not args.no_competitor))
                return 0
            if not (math.isfinite(args.min_seconds) and args.min_seconds > 0):
                raise ValueError(f"--min-seconds must be a finite number of seconds > 0, got {args.min_seconds!r}")
            sizes = _parse_sizes(args.sizes) if args.sizes is not None else BENCH_SIZES
            rows = run_benchmark(sizes, device=args.device, min_seconds=args.min_seconds)
            print(format_table(rows))
            return 0
        exp = experiments.get_experiment(args.experiment)
        if args.command == "show":
            import dataclasses

            print(json.dumps(dataclasses.asdict(exp.scales[args.scale]), indent=1))
            return 0
        if args.seed is not None and args.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {args.seed}")
        record = experiments.run_experiment(
            args.experiment, args.scale, args.overrides, device=args.device, seed=args.seed,
            out=args.out, progress=not args.quiet,
        )
    except KeyboardInterrupt:
        kept = ""
        if getattr(args, "out", None):
            pieces = Path(args.out) / "pieces"
            done = len([p for p in pieces.glob("*.json") if p.name != "run.json"]) if pieces.is_dir() else 0
            kept = f"; {done} finished piece(s) kept in {pieces}: run the same command to resume"
        print(f"polybook: interrupted{kept}", file=sys.stderr)
        return 130
    except experiments.Diverged as err:
        print(f"polybook: error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"polybook: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"polybook: error: could not write the result ({err}); any previous result.json is unchanged",
              file=sys.stderr)
        return 1
    if args.out is None:
        print(json.dumps(record["results"], indent=1))
    else:
        print(f"wrote {args.out.rstrip('/')}/result.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

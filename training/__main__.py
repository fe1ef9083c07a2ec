"""`python -m training run SPEC.json --out DIR [--resume] [--epochs N]` and `validate SPEC.json`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from training.records import EpochRecord
from training.spec import JobSpec, describe_errors, lint

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _load_spec(path: Path, epochs: int | None = None) -> JobSpec | None:
    """Read and validate a spec file; print what is wrong and return None when it is bad."""
    try:
        raw: Any = json.loads(path.read_text())
    except FileNotFoundError:
        print(f"error: spec file {path} does not exist", file=sys.stderr)
        return None
    except json.JSONDecodeError as error:
        print(f"error: {path} is not valid JSON: {error}", file=sys.stderr)
        return None
    if epochs is not None and isinstance(raw, dict):
        raw.setdefault("training", {})["epochs"] = epochs
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as error:
        print(f"error: {path} is not a valid job spec:", file=sys.stderr)
        for problem in describe_errors(error.errors()):
            print(f"  {problem.field}: {problem.message}", file=sys.stderr)
        return None


def _print_epoch(record: EpochRecord) -> None:
    shown = {k: v for k, v in record.model_dump(exclude={"layers"}).items() if v is not None}
    parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()]
    print(" ".join(parts), flush=True)


def _run(args: argparse.Namespace) -> int:
    from training.callbacks import Callback
    from training.loop import fit

    spec = _load_spec(args.spec, args.epochs)
    if spec is None:
        return EXIT_USAGE
    for warning in lint(spec):
        print(f"warning [{warning.code}] {warning.message}", file=sys.stderr)

    class Printer(Callback):
        def on_epoch_end(self, record: EpochRecord) -> None:
            _print_epoch(record)

    try:
        seconds = args.checkpoint_seconds
        result = fit(spec, args.out, callbacks=[Printer()], resume=args.resume, checkpoint_seconds=seconds)
    except ValueError as error:  # --resume onto a checkpoint written for another spec
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(result.model_dump(mode="json", exclude={"best", "final"}), indent=2))
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
    return EXIT_OK if result.status == "succeeded" else EXIT_FAILED


def _validate(args: argparse.Namespace) -> int:
    spec = _load_spec(args.spec)
    if spec is None:
        return EXIT_USAGE
    print(spec.model_dump_json(indent=2))
    for warning in lint(spec):
        print(f"warning [{warning.code}] {warning.field}: {warning.message}")
    return EXIT_OK


def _seconds(text: str) -> float:
    """A duration in seconds, 0 or more."""
    seconds = float(text)
    if not seconds >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more (got {text})")
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run it."""
    parser = argparse.ArgumentParser(prog="python -m training", description="trainctl's training engine")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train a spec")
    run.add_argument("spec", type=Path, help="job spec (JSON)")
    run.add_argument("--out", type=Path, required=True, help="folder for metrics, checkpoints, result")
    run.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last")
    run.add_argument("--epochs", type=int, help="override training.epochs")
    run.add_argument(
        "--checkpoint-seconds",
        type=_seconds,
        default=0.0,
        help="write best and last at most this often, and at the end (default 0: after every epoch)",
    )
    run.set_defaults(handler=_run)
    validate = commands.add_parser("validate", help="print the normalized spec and its warnings")
    validate.add_argument("spec", type=Path, help="job spec (JSON)")
    validate.set_defaults(handler=_validate)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())

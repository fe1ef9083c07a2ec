"""A larger schemathesis run than CI's: every operation, both backends, N examples each (default 1,000).

    TRAINCTL_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/fuzz.py [--examples 1000] [pytest arguments...]

It runs tests/api/test_fuzz.py (no 5xx, documented statuses, content types, schemas and headers, auth
enforced) with TRAINCTL_FUZZ_EXAMPLES set, and prints the requests made and the wall time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=1000, help="examples per operation and backend")
    args, pytest_args = parser.parse_known_args()
    env = {**os.environ, "TRAINCTL_FUZZ_EXAMPLES": str(args.examples)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/api/test_fuzz.py"]
    started = time.monotonic()
    result = subprocess.run([*command, *pytest_args], cwd=ROOT, env=env, check=False)
    seconds = time.monotonic() - started
    print(
        f"fuzz: {args.examples} examples per operation and backend, {seconds:.0f} s, exit {result.returncode}"
    )
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())

"""`python -m trainctl` (how `serve` starts its worker child)."""

from trainctl.cli import main

main()

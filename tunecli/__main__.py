"""`python -m tunecli` runs the CLI (the workers of `search --workers N` start this way)."""

from tunecli.cli import main

main()

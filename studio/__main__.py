"""`python -m studio` runs the CLI."""

from studio.cli import main

main()

"""`python -m wam` runs the CLI."""

from wam.cli import main

main()

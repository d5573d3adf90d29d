"""`python -m resgraph` runs the `resgraph` command."""

from .cli import main

main(prog_name="resgraph")

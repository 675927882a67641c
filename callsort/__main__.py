"""``python -m callsort`` runs the command-line interface."""

from callsort.cli import main

main()

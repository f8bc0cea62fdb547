"""Subcommands of the ``group3ad`` command line.

Each module here defines NAME (the subcommand), HELP (one line), ``add_arguments(parser)`` and
``run(args) -> int``; ``group3ad.cli`` discovers them, so adding a command is adding a file.
"""

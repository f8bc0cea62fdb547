"""Errors that are the user's to fix: the command line prints them without a traceback."""


class UserError(Exception):
    """A problem with the user's input (data, paths, options, model files), not a bug."""

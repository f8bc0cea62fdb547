"""The one error type of ``group3ad.data``: bad, missing or inconsistent dataset files."""

from __future__ import annotations

import os

from ..errors import UserError


class DataError(UserError, ValueError):
    """A dataset file or folder that cannot be used as it is.

    The message always names the file (or folder) and the problem. It is a ``ValueError`` for
    library callers and a ``UserError`` for the command line (printed without a traceback).
    """

    def __init__(self, path, problem: str | None = None):
        if problem is None:  # DataError("message"): no file to name
            path, problem = None, str(path)
        self.path = os.fspath(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)

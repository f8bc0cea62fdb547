"""Progress bars for long steps (tqdm on stderr; off when ``show`` is False or
GROUP3AD_NO_PROGRESS=1, e.g. in tests and logs)."""

from __future__ import annotations

import os

from tqdm.auto import tqdm


def enabled(show: bool = True) -> bool:
    return bool(show) and os.environ.get("GROUP3AD_NO_PROGRESS", "0") != "1"


def progress(items, desc: str, show: bool = True, total: int | None = None):
    """``items`` wrapped in a tqdm bar labelled ``desc``."""
    return tqdm(items, desc=desc, total=total, disable=not enabled(show), leave=False,
                dynamic_ncols=True)

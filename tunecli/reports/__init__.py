"""What a stored study shows: read from the storage alone (the spec travels with the study).

- ``summary``: the numbers once (counts, best, effort saved, importances); JSON/CSV
- ``terminal``: the terminal report (fits 100 columns)
- ``export``: the best configuration as a ready-to-run study file
- ``compare``: several studies side by side
- ``figures``: plotly figures; ``html``: the self-contained HTML page
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it; imported on first use (PEP 562), so importing the
# package stays cheap and no module here has to import another package at start-up.
_EXPORTS = {
    "summary": "tunecli.reports.summary",
    "to_json": "tunecli.reports.summary",
    "to_csv": "tunecli.reports.summary",
    "IMPORTANCE_METHODS": "tunecli.reports.summary",
    "format_value": "tunecli.reports.summary",
    "show": "tunecli.reports.terminal",
    "best_study_yaml": "tunecli.reports.export",
    "comparison": "tunecli.reports.compare",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

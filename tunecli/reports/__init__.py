"""What a stored study shows: read from the storage alone (the spec travels with the study).

- ``summary``: the numbers once (counts, best, effort saved, importances); JSON/CSV
- ``terminal``: the terminal report (fits 100 columns)
- ``export``: the best configuration as a ready-to-run study file
- ``compare``: several studies side by side
- ``figures``: plotly figures; ``html``: the self-contained HTML page
"""

from __future__ import annotations

from tunecli.lazy import lazy_getattr

# name -> the module that defines it, imported on first use (see tunecli.lazy)
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
__getattr__ = lazy_getattr(__name__, _EXPORTS)

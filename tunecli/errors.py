"""The three kinds of trouble tunecli tells apart, and the exit code each one means.

- ``SpecError``: the user's input is wrong (study file, option, unknown study). Exit 2;
  nothing runs.
- ``TrialFailed``: one trial could not finish (NaN loss, out of memory). It is recorded and the
  study goes on.
- ``StudyFailed``: the study as a whole cannot go on (every trial fails). Exit 1.
- ``TrialCut``: the run stopped a trial at an epoch boundary (its time limit). Not a failure of
  the configuration: the trial counts as lost, and ``resume`` continues it from that epoch.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from tunecli import attrs

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "SpecError",
    "SpecErrors",
    "StudyFailed",
    "TrialCut",
    "TrialFailed",
    "TunecliError",
    "did_you_mean",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class TunecliError(Exception):
    """Base of the errors the CLI turns into one line and an exit code."""

    exit_code = EXIT_FAILED


class SpecError(TunecliError):
    """Bad input: says where (file and dotted key path), what was wrong, and how to fix it."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, source: str | None = None, path: str | None = None,
                 fix: str | None = None) -> None:
        self.message = message
        self.source = source
        self.path = path
        self.fix = fix
        super().__init__(self.line())

    def lines(self) -> list[str]:
        """One line per problem (one here; several in ``SpecErrors``)."""
        return [self.line()]

    def found_in(self, source: str) -> SpecError:
        """The same problem(s), said to be in ``source`` where no source was named."""
        return SpecError(self.message, source=self.source or source, path=self.path,
                         fix=self.fix)

    def line(self) -> str:
        where = ": ".join(part for part in (self.source, self.path) if part)
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            text = f"{text.rstrip('.')}. {self.fix}"
        return " ".join(text.split())  # always one line


class SpecErrors(SpecError):
    """Several problems of one input, reported together: one line each."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(first.message, source=first.source, path=first.path, fix=first.fix)

    def lines(self) -> list[str]:
        return [e.line() for e in self.errors]

    def found_in(self, source: str) -> SpecError:
        return SpecErrors([e.found_in(source) for e in self.errors])


class StudyFailed(TunecliError):
    """The study cannot reach its budget (e.g. every trial failed)."""

    exit_code = EXIT_FAILED


class TrialFailed(Exception):
    """One trial failed for a reason worth recording; the study moves on to the next trial."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TrialCut(Exception):
    """The run's time limit passed: the trial stops after the epoch it just stored, with its
    checkpoint kept, so that ``resume`` continues it from there."""

    def __init__(self, epoch: int) -> None:
        self.reason = f"{attrs.TIME_LIMIT} after epoch {epoch}"
        super().__init__(self.reason)


def did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"Did you mean '{close[0]}'?" if close else ""

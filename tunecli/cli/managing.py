"""``delete`` and ``copy``: study management, as users of Optuna's CLI expect it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from tunecli.cli.app import StorageOption, console, guard


def delete(
    name: Annotated[str, typer.Argument(help="Study name", show_default=False)],
    storage: StorageOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first (for scripts)")]
        = False,
) -> None:
    """Delete a study, its trials and its checkpoints (asks first)."""
    def body() -> None:
        from tunecli.api import stores

        url = stores.resolve_url(storage)
        study, _ = stores.load(name, url)
        counts = stores.trial_counts(study)
        describe = stores.describe
        where = escape(describe(url))
        if not yes and not typer.confirm(f"Delete study '{name}' ({counts['finished']} finished "
                                         f"trials) from {describe(url)}?", default=False):
            console.print("Nothing deleted.")
            raise typer.Exit(1)
        stores.delete_study(name, url)
        console.print(f"deleted study '{name}' from {where}", soft_wrap=True)
    guard(body)


def copy(
    name: Annotated[str, typer.Argument(help="Study to copy", show_default=False)],
    new_name: Annotated[str, typer.Argument(help="Name of the copy", show_default=False)],
    storage: StorageOption = None,
    to_storage: Annotated[str | None, typer.Option(
        "--to-storage", help="Storage of the copy \\[default: the same storage]",
        show_default=False)] = None,
) -> None:
    """Copy a study with all its trials, in the same storage or to another one."""
    def body() -> None:
        from tunecli.api import stores

        url = stores.resolve_url(storage)
        target_url = stores.resolve_url(to_storage) if to_storage else url
        stores.copy_study(name, new_name, url, target_url)
        console.print(f"copied '{name}' to '{new_name}' in "
                      f"{escape(stores.describe(target_url))}",
                      soft_wrap=True)
    guard(body)

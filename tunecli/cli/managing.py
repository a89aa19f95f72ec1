"""``delete`` and ``copy``: study management, as users of Optuna's CLI expect it."""

from __future__ import annotations

import shutil
from typing import Annotated

import typer
from rich.markup import escape

from tunecli.cli.app import StorageOption, console, guard
from tunecli.errors import SpecError


def delete(
    name: Annotated[str, typer.Argument(help="Study name", show_default=False)],
    storage: StorageOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first (for scripts)")]
        = False,
) -> None:
    """Delete a study, its trials and its checkpoints (asks first)."""
    def body() -> None:
        import optuna

        from tunecli.engine.store import studies as study_module
        from tunecli.engine.store.recovery import count_trials
        from tunecli.engine.store.storage import describe, open_storage, resolve_url, study_folder

        url = resolve_url(storage)
        study, _ = study_module.load(name, url)
        counts = count_trials(study.get_trials(deepcopy=False))
        where = escape(describe(url))
        if not yes and not typer.confirm(f"Delete study '{name}' ({counts['finished']} finished "
                                         f"trials) from {describe(url)}?", default=False):
            console.print("Nothing deleted.")
            raise typer.Exit(1)
        optuna.delete_study(study_name=name,
                            storage=open_storage(url, heartbeat=False, create=False))
        shutil.rmtree(study_folder(url, name), ignore_errors=True)
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
        import optuna

        from tunecli.engine.store import studies as study_module
        from tunecli.engine.store.storage import describe, open_storage, resolve_url

        url = resolve_url(storage)
        target_url = resolve_url(to_storage) if to_storage else url
        study_module.load(name, url)  # exists, and is a tunecli study
        target = open_storage(target_url, heartbeat=False)
        if new_name in study_module.study_names(target):
            raise SpecError(f"a study named '{new_name}' already exists in "
                            f"{describe(target_url)}", source="NEW_NAME",
                            fix="Choose another name, or delete that study first.")
        optuna.copy_study(from_study_name=name,
                          from_storage=open_storage(url, heartbeat=False, create=False),
                          to_storage=target, to_study_name=new_name)
        console.print(f"copied '{name}' to '{new_name}' in {escape(describe(target_url))}",
                      soft_wrap=True)
    guard(body)

"""Storages and the studies in them, as the CLI names them: a storage's URL (the default, shown
with its password masked), a study loaded, deleted or copied."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunecli.engine.store.storage import DEFAULT_URL, describe, mask, resolve_url
from tunecli.errors import SpecError

if TYPE_CHECKING:
    import optuna

    from tunecli.spec.models import StudySpec

__all__ = ["DEFAULT_URL", "copy_study", "delete_study", "describe", "load", "mask",
           "resolve_url", "trial_counts"]


def load(name: str, url: str, *, overrides: dict[str, Any] | None = None
         ) -> tuple[optuna.Study, StudySpec]:
    """A tunecli study by name, with its stored spec (a SpecError names what is missing)."""
    from tunecli.engine.search import studies

    return studies.load(name, url, overrides=overrides)


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """complete, pruned, failed, running, waiting and finished (complete + pruned)."""
    from tunecli.engine.store.recovery import count_trials

    return count_trials(study.get_trials(deepcopy=False))


def delete_study(name: str, url: str) -> None:
    """Delete the study, its trials and its checkpoints."""
    import shutil

    import optuna

    from tunecli.engine.store.storage import open_storage, study_folder

    optuna.delete_study(study_name=name, storage=open_storage(url, heartbeat=False,
                                                              create=False))
    shutil.rmtree(study_folder(url, name), ignore_errors=True)


def copy_study(name: str, new_name: str, url: str, target_url: str) -> None:
    """Copy a study with all its trials to ``new_name`` in ``target_url`` (the same storage
    or another); a name already there is a SpecError."""
    import optuna

    from tunecli.engine.search import studies
    from tunecli.engine.store.storage import open_storage

    studies.load(name, url)  # exists, and is a tunecli study
    target = open_storage(target_url, heartbeat=False)
    if new_name in studies.study_names(target):
        raise SpecError(f"a study named '{new_name}' already exists in "
                        f"{describe(target_url)}", source="NEW_NAME",
                        fix="Choose another name, or delete that study first.")
    optuna.copy_study(from_study_name=name,
                      from_storage=open_storage(url, heartbeat=False, create=False),
                      to_storage=target, to_study_name=new_name)

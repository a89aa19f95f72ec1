"""Many machines: the storage proxy ``serve`` starts, and the SLURM / Kubernetes files
``launch`` writes (``tunecli worker`` itself is ``open_for_resume`` and ``running``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunecli.errors import SpecError, did_you_mean

__all__ = ["launch_file_name", "launch_next_steps", "launch_text", "serve"]


def serve(storage: str | None, host: str, port: int, tls: tuple[str, str] | None = None,
          token_file: str | None = None) -> tuple[Any, str]:
    """Start Optuna's gRPC storage proxy over the storage, locked with ``tls`` (certificate
    and key files) and a ``token_file`` when given: the running proxy (``url``,
    ``reachable_url``, ``traffic()``, ``stop()``) and the storage's description."""
    from tunecli.engine.store import proxy
    from tunecli.engine.store.storage import describe, resolve_url

    url = resolve_url(storage)
    return proxy.start(url, host, port, tls, token_file), describe(url)


def launch_file_name(target: str, name: str) -> str:
    """The file ``launch TARGET NAME`` writes by default (an unknown target: SpecError)."""
    from tunecli.engine.cluster.launch import TARGETS

    if target not in TARGETS:
        raise SpecError(f"'{target}' is not a launch target", source="TARGET",
                        fix=did_you_mean(target, list(TARGETS)) or "Use slurm or k8s.")
    return TARGETS[target].format(name=name)


def launch_text(target: str, name: str, **options: Any) -> str:
    """The launch file's text (options as ``engine.cluster.launch.write`` takes them)."""
    from tunecli.engine.cluster import launch

    return launch.write(target, name, **options)


def launch_next_steps(target: str, path: Path, name: str) -> str:
    """What to run once the file is written."""
    from tunecli.engine.cluster import launch

    return launch.next_steps(target, path, name)


def study_not_here(name: str) -> str | None:
    """A warning when the storage this machine sees (``TUNECLI_STORAGE``, else ``tunecli.db``
    here) holds studies but not ``name`` (a typo?); None when it holds it, or when there is no
    storage here to ask (a cluster's own database, made by the manifests)."""
    import optuna

    from tunecli.engine.store.storage import describe, open_existing, resolve_url

    url = resolve_url(None)
    try:
        opened = open_existing(url)
    except SpecError:
        return None  # not reachable from here: the workers' storage is theirs to check
    if opened is None:
        return None
    names = optuna.get_all_study_names(opened)
    if name in names or not names:
        return None
    return (f"the storage here ({describe(url)}) holds no study '{name}'. "
            + (did_you_mean(name, names) or f"It holds {', '.join(names[:5])}.")
            + " The workers wait for it in the storage they are given (--wait).")

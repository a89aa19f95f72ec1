"""``serve``, ``worker`` and ``launch``: one study spread over many machines."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from tunecli.cli import searching
from tunecli.cli.app import (
    DataRootOption,
    DevicesOption,
    FuseOption,
    KeepOption,
    StorageOption,
    TrialsPerDeviceOption,
    WorkersOption,
    check_keep,
    console,
    err_console,
    guard,
    output_file,
)
from tunecli.errors import SpecError

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
NO_LOGIN = ("the proxy listens beyond this machine without {missing}: whoever reaches its port "
            "can read and change every study. Lock it (--tls-cert and --tls-key, --token-file), "
            "or keep it on loopback and reach it through an SSH tunnel (ssh -N -L "
            "13000:127.0.0.1:13000 HOST).")


def serve(
    storage: StorageOption = None,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on. Loopback (the default) lets only this machine "
                       "in; beyond it, lock the door (TLS and a token) or reach it through "
                       "an SSH tunnel")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on", min=1,
                                      max=65535)] = 13000,
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", help="TLS: this server's certificate chain (PEM); clients trust its CA "
                           "through TUNECLI_TLS_CA", show_default=False)] = None,
    tls_key: Annotated[Path | None, typer.Option(
        "--tls-key", help="TLS: the certificate's private key (PEM)", show_default=False)]
        = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", help="A file holding a shared token; clients send theirs from the file "
                             "TUNECLI_TOKEN_FILE names, and a call without it is refused",
        show_default=False)] = None,
) -> None:
    """Serve a storage to workers on other machines (Optuna's gRPC storage proxy).

    One cache for hundreds of workers, one connection each; workers give --storage
    grpc://HOST:PORT. Beyond loopback, lock it: --tls-cert/--tls-key and --token-file."""
    def body() -> None:
        from tunecli.api.cluster import serve as start_proxy

        if (tls_cert is None) != (tls_key is None):
            given, missing = (("--tls-cert", "--tls-key") if tls_key is None
                              else ("--tls-key", "--tls-cert"))
            raise SpecError(f"{given} needs {missing}", source=missing,
                            fix="Give both: the certificate and its private key.")
        tls = (str(tls_cert), str(tls_key)) if tls_cert and tls_key else None
        proxy, where = start_proxy(storage, host, port, tls,
                                   str(token_file) if token_file else None)
        locks = [what for what, on in (("TLS", tls), ("a token", token_file)) if on]
        console.print(f"serving {escape(where)} at [bold]{proxy.url}[/]"
                      + (f" ({' and '.join(locks)})" if locks else ""),
                      highlight=False, soft_wrap=True)
        console.print(f"workers: tunecli worker NAME --storage {proxy.reachable_url}   (Ctrl-C or "
                      "SIGTERM stops the proxy)", highlight=False, soft_wrap=True)
        if host not in _LOOPBACK and len(locks) < 2:
            missing = " and ".join(what for what in ("TLS", "a token")
                                   if what not in locks)
            err_console.print(f"[yellow]warning:[/] {NO_LOGIN.format(missing=missing)}",
                              soft_wrap=True)
        console.file.flush()
        _until_stopped(proxy)
    guard(body)


def _until_stopped(proxy: Any) -> None:
    """The proxy's traffic, live (a line every 30 s in a log), until Ctrl-C or SIGTERM; then
    the requests in flight finish and it stops."""
    from rich.live import Live

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    last_calls, last_time = 0, time.monotonic()
    live = Live(console=console, transient=True, auto_refresh=False) if console.is_terminal \
        else None
    every = 1.0 if live is not None else 30.0  # the rate is over the time since the last line
    try:
        if live is not None:
            live.start()
        while True:
            time.sleep(1.0)
            now, calls = time.monotonic(), proxy.counted.calls
            if now - last_time < every:
                continue
            line = traffic(calls, calls - last_calls, now - last_time, now - proxy.started)
            last_calls, last_time = calls, now
            if live is not None:
                live.update(line, refresh=True)
            else:
                console.print(line, highlight=False)
    except KeyboardInterrupt:
        if live is not None:
            live.stop()
        proxy.stop()
        console.print(f"proxy stopped after {proxy.counted.calls} requests", highlight=False)


def traffic(calls: int, new_calls: int, seconds: float, up: float) -> str:
    """The proxy's line: its requests, their rate since the last line, and its uptime."""
    return (f"{calls:,} requests, {new_calls / seconds:.1f}/s over the last {seconds:.0f} s, "
            f"up {_clock(up)}")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def worker(
    name: Annotated[str, typer.Argument(help="The study's name", show_default=False)],
    storage: StorageOption = None,
    wait: Annotated[str, typer.Option(
        "--wait", help="How long to wait for the storage and the study to appear")] = "10m",
    data_root: DataRootOption = None,
    keep_checkpoints: KeepOption = "best",
    workers: WorkersOption = None,
    devices: DevicesOption = None,
    trials_per_device: TrialsPerDeviceOption = 1,
    fuse: FuseOption = None,
) -> None:
    """Join a stored study by its name and run its trials until the budget is met.

    The spec comes from the storage; this machine's --data-root, --devices and --workers
    apply."""
    def body() -> None:
        from tunecli import api
        from tunecli.api.running import Tracking
        from tunecli.spec.models import parse_duration

        try:
            seconds = parse_duration(wait) or 0.0
        except ValueError as exc:
            raise SpecError(str(exc), source="--wait", fix="Write e.g. 90s, 10m or 1h.") \
                from None
        url = _waited(name, storage, seconds)
        opened = api.open_for_resume(name, {}, storage=url, data_root=data_root)
        if api.budget_met(opened):
            console.print(f"study '{name}' needs no more trials (its budget is met)",
                          highlight=False)
            return
        tracking = Tracking(None, None)
        searching.run_opened(opened, workers, devices, trials_per_device, data_root,
                             check_keep(keep_checkpoints), tracking, fuse)
    guard(body)


def _waited(name: str, storage: str | None, seconds: float) -> str:
    """The storage URL once the study is there, with a countdown while it is not."""
    from tunecli import api

    status = console.status("", spinner="dots") if console.is_terminal else None
    said: list[str] = []

    def waiting(left: float, why: str) -> None:
        line = f"waiting for study '{name}': {why} ({_clock(left)} left, Ctrl-C stops)"
        if status is not None:
            status.update(escape(line))
        elif why not in said:
            said.append(why)
            console.print(line, highlight=False, soft_wrap=True)

    if status is not None:
        status.start()
    try:
        return api.wait_for_study(name, storage, seconds, waiting)
    finally:
        if status is not None:
            status.stop()


def launch(
    target: Annotated[str, typer.Argument(help="slurm or k8s", show_default=False)],
    name: Annotated[str, typer.Argument(help="The study's name", show_default=False)],
    workers: Annotated[int, typer.Option("--workers", help="Worker jobs", min=1)] = 8,
    gpus: Annotated[int, typer.Option("--gpus-per-worker", help="GPUs per worker (0: CPU)",
                                      min=0)] = 1,
    time_limit: Annotated[str, typer.Option(
        "--time", help="SLURM: each job's time limit")] = "04:00:00",
    image: Annotated[str, typer.Option(
        "--image", help="k8s: the container image with tunecli installed")] = "tunecli:latest",
    storage_class: Annotated[str | None, typer.Option(
        "--storage-class", help="k8s: the checkpoint claim's storage class (it must offer "
                                "ReadWriteMany)", show_default=False)] = None,
    data_claim: Annotated[str | None, typer.Option(
        "--data-claim", help="k8s: a PersistentVolumeClaim holding the data root, mounted "
                             "read-only at /data for the workers", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write here \\[default: NAME.slurm or NAME-k8s.yaml]",
        show_default=False)] = None,
) -> None:
    """Write a SLURM array script or Kubernetes manifests that run tunecli worker NAME.

    The storage's URL and credentials come from the environment or a Secret, never the file."""
    def body() -> None:
        from tunecli.api import cluster

        default = cluster.launch_file_name(target, name)
        text = cluster.launch_text(target, name, workers=workers, gpus=gpus,
                                   time_limit=time_limit, image=image,
                                   storage_class=storage_class, data_claim=data_claim)
        path = output_file(out or Path(default), "--out", default)
        assert path is not None
        path.write_text(text, encoding="utf-8")
        console.print(f"wrote {escape(str(path))}", highlight=False)
        console.print(cluster.launch_next_steps(target, path, name), highlight=False,
                      soft_wrap=True)
        absent = cluster.study_not_here(name)
        if absent:
            err_console.print(f"[yellow]warning:[/] {escape(absent)}", soft_wrap=True)
    guard(body)

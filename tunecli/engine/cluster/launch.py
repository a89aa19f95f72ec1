"""Launch files for clusters: a SLURM job array and Kubernetes manifests, each running
``tunecli worker NAME`` on every node.

Neither file holds a storage URL with credentials: SLURM's reads ``TUNECLI_STORAGE`` from the
submitting shell; Kubernetes' read the database password and URL from the Secret
``tunecli-storage``. A worker told to stop (SLURM's ``--signal=TERM@120`` before the time limit
or on preemption; Kubernetes' SIGTERM with ``terminationGracePeriodSeconds``) ends its trial after
the last stored epoch, and the next worker continues it from its checkpoint (which lives in
``.tunecli/`` under the working folder: a shared file system, or the shared volume below).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from tunecli.errors import SpecError

__all__ = ["PROXY_PORT", "SECRET", "TARGETS", "check", "next_steps", "write"]

TARGETS = {"slurm": "{name}.slurm", "k8s": "{name}-k8s.yaml"}
SECRET = "tunecli-storage"
PROXY_PORT = 13000
GRACE_SECONDS = 150  # the signal comes 120 s before the end; a trial's epoch must finish


DATA_MOUNT = "/data"
# A study name a file, a shell word and (lower-cased) a Kubernetes name can all hold.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")
# SLURM's --time: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds
_SLURM_TIME = re.compile(r"^(\d+(:\d{1,2}){0,2}|\d+-\d{1,2}(:\d{1,2}){0,2})$")
# A Kubernetes object name (RFC 1123 subdomain), for the storage class and the data claim
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def check(target: str, name: str, *, time_limit: str, storage_class: str | None = None,
          data_claim: str | None = None) -> None:
    """Everything a cluster would reject or misread, before a file is written."""
    if not _NAME.match(name):
        raise SpecError(f"study name {name!r} cannot name a launch file, a shell word and a "
                        "Kubernetes object", source="NAME",
                        fix="Use letters, digits, '.', '_' and '-' (up to 48, starting with a "
                            "letter or digit): tunecli copy OLD NEW renames a study.")
    if target == "slurm" and not _SLURM_TIME.match(time_limit):
        raise SpecError(f"{time_limit!r} is not a SLURM time limit", source="--time",
                        fix="Write MINUTES, HH:MM:SS or DAYS-HH[:MM[:SS]], e.g. 04:00:00 or "
                            "1-12.")
    for value, option in ((storage_class, "--storage-class"), (data_claim, "--data-claim")):
        if value is not None and not _K8S_NAME.match(value):
            raise SpecError(f"{value!r} is not a Kubernetes name", source=option,
                            fix="Use lower-case letters, digits, '-' and '.', starting and "
                                "ending with a letter or digit.")


def write(target: str, name: str, *, workers: int, gpus: int, time_limit: str,
          image: str, storage_class: str | None = None, data_claim: str | None = None) -> str:
    """The launch file's text for ``target`` (slurm or k8s), once ``check`` passed.
    ``storage_class``: the checkpoint claim's (it needs ReadWriteMany, which not every class
    offers); ``data_claim``: a claim holding the data root, mounted read-only at /data."""
    check(target, name, time_limit=time_limit, storage_class=storage_class,
          data_claim=data_claim)
    if target == "slurm":
        return _slurm(name, workers, gpus, time_limit)
    return _kubernetes(name, workers, gpus, image, storage_class, data_claim)


def next_steps(target: str, path: Path, name: str) -> str:
    if target == "slurm":
        return ("submit: export TUNECLI_STORAGE=URL (grpc://HOST:13000 from tunecli serve, or "
                f"postgresql://...); sbatch {path}")
    return (f"apply: kubectl create secret generic {SECRET} --from-literal=postgres-password=P "
            f"--from-literal=database-url=postgresql://tunecli:P@tunecli-postgres:5432/tunecli"
            f"; kubectl apply -f {path}; then create the study in it (tunecli search FILE "
            f"--storage grpc://... through kubectl port-forward svc/tunecli-proxy "
            f"{PROXY_PORT}); watch: kubectl logs -f -l tunecli-study={_label(name)}")


def _slurm(name: str, workers: int, gpus: int, time_limit: str) -> str:
    quoted = shlex.quote(name)
    gres = f"#SBATCH --gres=gpu:{gpus}\n" if gpus else ""
    return f"""#!/bin/bash
# {workers} tunecli workers for study {name}, one per array task (tunecli launch slurm).
# Submit from a folder on a shared file system (checkpoints live in .tunecli/ under it):
#   export TUNECLI_STORAGE=grpc://HOST:{PROXY_PORT}   # tunecli serve, or postgresql://...
#   sbatch {TARGETS['slurm'].format(name=name)}
# The URL is read from the environment, never written here. SIGTERM comes 120 s before the
# time limit (and on preemption): the trial stops after its last stored epoch and the task
# ends; another task, or the next sbatch of this file, continues the trial from its
# checkpoint. (--requeue puts a task back in the queue after a node failure or preemption,
# not after its time limit.)
#SBATCH --job-name=tunecli-{_label(name)}
#SBATCH --array=0-{workers - 1}
{gres}#SBATCH --cpus-per-task=4
#SBATCH --time={time_limit}
#SBATCH --signal=TERM@120
#SBATCH --requeue
#SBATCH --output=tunecli-{_label(name)}-%A_%a.out
set -uo pipefail
: "${{TUNECLI_STORAGE:?export TUNECLI_STORAGE=the study storage URL before sbatch}}"
cd "${{SLURM_SUBMIT_DIR:-.}}"
srun tunecli worker {quoted} --storage "$TUNECLI_STORAGE" --wait 10m
"""


def _label(name: str) -> str:
    """``name`` as a Kubernetes name or label value (lower case, digits, dashes)."""
    cleaned = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return cleaned[:50] or "study"


def _secret_env(variable: str, key: str) -> dict[str, object]:
    return {"name": variable, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key}}}


def _kubernetes(name: str, workers: int, gpus: int, image: str, storage_class: str | None,
                data_claim: str | None) -> str:
    label = _label(name)
    postgres = {"app": "tunecli-postgres"}
    proxy = {"app": "tunecli-proxy"}
    documents: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "tunecli-postgres"},
         "spec": {"selector": postgres, "ports": [{"port": 5432, "targetPort": 5432}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet",
         "metadata": {"name": "tunecli-postgres"},
         "spec": {"serviceName": "tunecli-postgres", "replicas": 1,
                  "selector": {"matchLabels": postgres},
                  "template": {"metadata": {"labels": postgres}, "spec": {"containers": [{
                      "name": "postgres", "image": "postgres:16",
                      "args": ["-c", "max_connections=200"],
                      "env": [{"name": "POSTGRES_USER", "value": "tunecli"},
                              {"name": "POSTGRES_DB", "value": "tunecli"},
                              {"name": "PGDATA", "value": "/var/lib/postgresql/data/db"},
                              _secret_env("POSTGRES_PASSWORD", "postgres-password")],
                      "ports": [{"containerPort": 5432}],
                      "volumeMounts": [{"name": "data",
                                        "mountPath": "/var/lib/postgresql/data"}]}]}},
                  "volumeClaimTemplates": [{
                      "metadata": {"name": "data"},
                      "spec": {"accessModes": ["ReadWriteOnce"],
                               "resources": {"requests": {"storage": "10Gi"}}}}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "tunecli-proxy"},
         "spec": {"replicas": 1, "selector": {"matchLabels": proxy},
                  "template": {"metadata": {"labels": proxy}, "spec": {"containers": [{
                      "name": "proxy", "image": image,
                      # inside the cluster's network only: the Service is ClusterIP
                      "command": ["tunecli", "serve", "--storage", "$(TUNECLI_DATABASE_URL)",
                                  "--host", "0.0.0.0", "--port", str(PROXY_PORT)],
                      "env": [_secret_env("TUNECLI_DATABASE_URL", "database-url")],
                      "ports": [{"containerPort": PROXY_PORT}],
                      "readinessProbe": {"tcpSocket": {"port": PROXY_PORT}}}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "tunecli-proxy"},
         "spec": {"type": "ClusterIP", "selector": proxy,
                  "ports": [{"port": PROXY_PORT, "targetPort": PROXY_PORT}]}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "tunecli-checkpoints"},
         "spec": {"accessModes": ["ReadWriteMany"],
                  **({"storageClassName": storage_class} if storage_class else {}),
                  "resources": {"requests": {"storage": "20Gi"}}}},
        _worker_job(name, label, workers, gpus, image, data_claim),
    ]
    header = (f"# tunecli workers for study {name} (tunecli launch k8s): PostgreSQL, the storage "
              f"proxy, a shared\n# checkpoint volume and an Indexed Job of {workers} workers. "
              f"Credentials come from the Secret {SECRET}.\n"
              + ("" if storage_class else "# The checkpoint claim needs a ReadWriteMany storage "
                 "class (NFS, CephFS, ...): --storage-class NAME names it.\n")
              + (f"# The data root is the claim {data_claim}, mounted read-only at "
                 f"{DATA_MOUNT}.\n" if data_claim else "# No data volume: the workers read the "
                 "data root stored with the study (--data-claim NAME mounts one).\n"))
    return header + yaml.safe_dump_all(documents, sort_keys=False)


def _worker_job(name: str, label: str, workers: int, gpus: int, image: str,
                data_claim: str | None) -> dict[str, object]:
    mounts: list[dict[str, object]] = [{"name": "checkpoints", "mountPath": "/work"}]
    volumes: list[dict[str, object]] = [{"name": "checkpoints", "persistentVolumeClaim": {
        "claimName": "tunecli-checkpoints"}}]
    command = ["tunecli", "worker", name, "--storage", f"grpc://tunecli-proxy:{PROXY_PORT}",
               "--wait", "10m"]
    if data_claim:
        mounts.append({"name": "data", "mountPath": DATA_MOUNT, "readOnly": True})
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": data_claim,
                                                                  "readOnly": True}})
        command += ["--data-root", DATA_MOUNT]
    container: dict[str, object] = {
        "name": "worker", "image": image, "workingDir": "/work", "command": command,
        "volumeMounts": mounts}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"tunecli-worker-{label}", "labels": {"tunecli-study": label}},
        "spec": {"completionMode": "Indexed", "completions": workers, "parallelism": workers,
                 "backoffLimit": 4 * workers,
                 "template": {"metadata": {"labels": {"tunecli-study": label}}, "spec": {
                     "restartPolicy": "OnFailure",
                     "terminationGracePeriodSeconds": GRACE_SECONDS,
                     "containers": [container], "volumes": volumes}}}}

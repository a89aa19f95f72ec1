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

import shlex
from pathlib import Path

import yaml

__all__ = ["PROXY_PORT", "SECRET", "TARGETS", "next_steps", "write"]

TARGETS = {"slurm": "{name}.slurm", "k8s": "{name}-k8s.yaml"}
SECRET = "tunecli-storage"
PROXY_PORT = 13000
GRACE_SECONDS = 150  # the signal comes 120 s before the end; a trial's epoch must finish


def write(target: str, name: str, *, workers: int, gpus: int, time_limit: str,
          image: str) -> str:
    """The launch file's text for ``target`` (slurm or k8s)."""
    if target == "slurm":
        return _slurm(name, workers, gpus, time_limit)
    return _kubernetes(name, workers, gpus, image)


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
# time limit (and on preemption): the trial stops after its last stored epoch, the task is
# requeued, and a worker continues the trial from its checkpoint.
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


def _kubernetes(name: str, workers: int, gpus: int, image: str) -> str:
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
                  "resources": {"requests": {"storage": "20Gi"}}}},
        _worker_job(name, label, workers, gpus, image),
    ]
    header = (f"# tunecli workers for study {name} (tunecli launch k8s): PostgreSQL, the storage "
              f"proxy, a shared\n# checkpoint volume and an Indexed Job of {workers} workers. "
              f"Credentials come from the Secret {SECRET}.\n")
    return header + yaml.safe_dump_all(documents, sort_keys=False)


def _worker_job(name: str, label: str, workers: int, gpus: int,
                image: str) -> dict[str, object]:
    container: dict[str, object] = {
        "name": "worker", "image": image, "workingDir": "/work",
        "command": ["tunecli", "worker", name, "--storage",
                    f"grpc://tunecli-proxy:{PROXY_PORT}", "--wait", "10m"],
        "volumeMounts": [{"name": "checkpoints", "mountPath": "/work"}]}
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
                     "containers": [container],
                     "volumes": [{"name": "checkpoints", "persistentVolumeClaim": {
                         "claimName": "tunecli-checkpoints"}}]}}}}

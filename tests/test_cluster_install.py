"""Without grpcio, serve and every grpc:// client name the pip line and create nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tunecli.engine.store.storage import GRPC_INSTALL


@pytest.fixture
def no_grpc(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment where ``import grpc`` fails, as after pip install --no-deps."""
    monkeypatch.setitem(sys.modules, "grpc", None)


@pytest.mark.usefixtures("no_grpc")
@pytest.mark.parametrize("command", [
    ["serve", "--storage", "sqlite:///served.db", "--port", "13999"],
    ["list", "--storage", "grpc://127.0.0.1:13999"],
    ["worker", "tiny", "--storage", "grpc://127.0.0.1:13999", "--wait", "10m"],
])
def test_a_missing_grpcio_is_one_line_with_the_pip_line(cli, command, tmp_path: Path) -> None:
    result = cli(*command)
    assert result.exit_code == 2, result.output
    assert GRPC_INSTALL in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 2
    assert list(tmp_path.iterdir()) in ([], [tmp_path / ".cache"])


@pytest.mark.parametrize(("args", "words"), [
    (["k8s", "bad name/.."], "study name 'bad name/..' cannot name a launch file"),
    (["slurm", "tiny", "--time", "soon"], "'soon' is not a SLURM time limit"),
    (["k8s", "tiny", "--storage-class", "Fast_NFS"], "'Fast_NFS' is not a Kubernetes name"),
    (["k8s", "tiny", "--data-claim", "-data"], "'-data' is not a Kubernetes name"),
    (["slurm", "tiny", "--out", "blocker/x.slurm"], "cannot create the folder"),
    (["slurm", "tiny", "--out", "."], "is a folder"),
])
def test_launch_refuses_what_a_cluster_would_reject(cli, tmp_path: Path, args, words) -> None:
    (tmp_path / "blocker").write_text("a regular file\n")
    before = sorted(tmp_path.iterdir())
    result = cli("launch", *args)
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output
    assert sorted(tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize("time_limit", ["30", "30:00", "04:00:00", "1-12", "2-04:30",
                                        "2-04:30:15"])
def test_every_slurm_time_format_is_taken(cli, time_limit: str) -> None:
    result = cli("launch", "slurm", "tiny", "--time", time_limit)
    assert result.exit_code == 0, result.output
    assert f"#SBATCH --time={time_limit}\n" in Path("tiny.slurm").read_text()


def test_the_kubernetes_job_mounts_the_data_claim_and_names_the_storage_class(cli) -> None:
    import yaml

    result = cli("launch", "k8s", "tiny", "--data-claim", "fashion-data", "--storage-class",
                 "nfs-client")
    assert result.exit_code == 0, result.output
    documents = {d["kind"]: d for d in yaml.safe_load_all(Path("tiny-k8s.yaml").read_text())}
    assert documents["PersistentVolumeClaim"]["spec"]["storageClassName"] == "nfs-client"
    pod = documents["Job"]["spec"]["template"]["spec"]
    worker = pod["containers"][0]
    assert worker["command"][-2:] == ["--data-root", "/data"]
    assert {"name": "data", "mountPath": "/data", "readOnly": True} in worker["volumeMounts"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    assert claims == {"checkpoints": "tunecli-checkpoints", "data": "fashion-data"}


def test_a_mistyped_worker_name_is_offered_the_close_one(cli, write_study) -> None:
    from tunecli import api

    api.open_for_search(write_study(), {})
    result = cli("worker", "tnyi", "--wait", "1s")
    assert result.exit_code == 2, result.output
    assert "no study 'tnyi' yet (Did you mean 'tiny'?)" in result.output


def test_the_proxys_line_gives_the_rate_since_the_last_line() -> None:
    from tunecli.cli.cluster import traffic

    assert traffic(21500, 450, 30.0, 3725) == \
        "21,500 requests, 15.0/s over the last 30 s, up 1:02:05"


def test_launch_warns_of_a_study_the_storage_here_does_not_hold(cli, write_study) -> None:
    from tunecli import api

    result = cli("launch", "slurm", "tiny")  # no storage here yet: nothing to ask, no warning
    assert result.exit_code == 0 and "warning" not in result.output
    api.open_for_search(write_study(), {})
    result = cli("launch", "slurm", "tiyn")
    assert result.exit_code == 0, result.output
    assert "holds no study 'tiyn'. Did you mean 'tiny'?" in " ".join(result.output.split())
    assert Path("tiyn.slurm").is_file()  # written: the cluster's storage may hold it
    result = cli("launch", "slurm", "tiny")
    assert result.exit_code == 0 and "warning" not in result.output

"""Many machines, one study, on this machine's loopback: ``tunecli serve`` (Optuna's gRPC
storage proxy) over PostgreSQL, ``tunecli worker`` processes that join by name, faults (the
proxy killed, PostgreSQL restarted) in the middle, and the launch files' worker commands run.

Every wait is on an observable condition: a line the server prints, a gate file a held trial
writes, a process's exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from tests.conftest import (
    TINY_STUDY,
    gate_env,
    gated,
    tunecli_command,
    wait_for_file,
)
from tunecli import api, attrs
from tunecli.engine.store.proxy import PROXY_THREADS

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(storage: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    """``tunecli serve``, once it says where it listens."""
    proc = subprocess.Popen([*tunecli_command(), "serve", "--storage", storage, "--port",
                             str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    assert f"at grpc://127.0.0.1:{port}" in line, line + (proc.stdout.read() if proc.stdout
                                                          else "")
    assert "not-a-secret" not in line
    return proc


def _workers(n: int, name: str, storage: str, env: dict[str, str]) -> list[subprocess.Popen]:
    return [subprocess.Popen([*tunecli_command(), "worker", name, "--storage", storage,
                              "--wait", "5m"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _ in range(n)]


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    return [(p.wait(timeout=600), p.stdout.read() if p.stdout else "") for p in procs]


def _check_study(url: str, n_trials: int, epochs: int) -> list[optuna.trial.FrozenTrial]:
    """Exactly ``n_trials`` finished, no configuration twice, nothing lost or left running,
    every finished trial's epochs stored."""
    trials = optuna.load_study(study_name="tiny", storage=url).get_trials()
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == n_trials, [(t.number, t.state.name) for t in trials]
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert not [t for t in trials if t.state.name == "FAIL" and not t.user_attrs.get("surplus")]
    configurations = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(configurations)) == len(configurations)
    for t in finished:
        stored = sorted(t.intermediate_values)
        assert stored == list(range(1, len(stored) + 1)) and stored
        if t.state.name == "COMPLETE":
            assert len(stored) == t.user_attrs["epochs_run"] <= epochs
    return trials


def test_ten_workers_through_serve_over_postgres(write_study, postgres, subprocess_env
                                                 ) -> None:
    """Workers started before the study exists wait for it; all of them finish it. The first
    trials wait until four processes train (gated_model), so the study is really shared."""
    port = _free_port()
    server = _serve(postgres.url, port, subprocess_env)
    proxy = f"grpc://127.0.0.1:{port}"
    try:
        env = gate_env({**subprocess_env, "TUNECLI_THREADS": "1"}, Path.cwd() / "gate", meet=4)
        workers = _workers(9, "tiny", proxy, env)
        study = write_study(gated(TINY_STUDY.replace("n_trials: 6", "n_trials: 48")))
        search = subprocess.Popen([*tunecli_command(), "search", str(study), "--storage",
                                   proxy], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        results = _finish([search, *workers])
        assert not [r for r in results if r[0] != 0], [r for r in results if r[0] != 0]
        assert any("waiting for study 'tiny'" in out for _, out in results[1:])
        # Each worker held one connection, to the proxy: the database sees the proxy's pool
        # (one per thread, one overflow), counted before this test opens its own.
        assert postgres.connections() <= PROXY_THREADS + 1
        trials = _check_study(postgres.url, 48, epochs=3)
        assert len({t.user_attrs.get("worker") for t in trials}) >= 4
    finally:
        server.send_signal(signal.SIGTERM)
        out = server.communicate(timeout=60)[0]
    assert server.returncode == 0 and "proxy stopped after" in out, out


def _held_study(write_study, subprocess_env: dict[str, str], gate: Path) -> tuple[Path, dict]:
    """A study of 16 trials whose 5th trial to start holds mid-training until released."""
    study = write_study(gated(TINY_STUDY.replace("n_trials: 6", "n_trials: 16")))
    return study, gate_env(subprocess_env, gate, hold_index=4, hold_at=2)


def test_the_proxy_killed_and_started_again(write_study, postgres, subprocess_env) -> None:
    port = _free_port()
    proxy = f"grpc://127.0.0.1:{port}"
    gate = Path.cwd() / "gate"
    study, env = _held_study(write_study, subprocess_env, gate)
    server = _serve(postgres.url, port, subprocess_env)
    search = subprocess.Popen([*tunecli_command(), "search", str(study), "--storage", proxy],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    workers = _workers(2, "tiny", proxy, env)
    try:
        wait_for_file(gate / "held-4", search if search.poll() is None else workers[0])
        server.kill()  # SIGKILL: no goodbye to anyone
        server.wait(timeout=30)
        server = _serve(postgres.url, port, subprocess_env)
        (gate / "release-4").touch()
        results = _finish([search, *workers])
        if any(code != 0 for code, _ in results):  # a worker that gave up: start another
            again = subprocess.run([*tunecli_command(), "worker", "tiny", "--storage", proxy],
                                   env=env, capture_output=True, text=True, timeout=600)
            assert again.returncode == 0, again.stdout + again.stderr
        _check_study(postgres.url, 16, epochs=3)
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_postgres_restarted_in_the_middle(write_study, postgres, subprocess_env) -> None:
    gate = Path.cwd() / "gate"
    study, env = _held_study(write_study, subprocess_env, gate)
    search = subprocess.Popen([*tunecli_command(), "search", str(study), "--storage",
                               postgres.url], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    workers = _workers(2, "tiny", postgres.url, env)
    wait_for_file(gate / "held-4", search)
    postgres.restart()
    (gate / "release-4").touch()
    results = _finish([search, *workers])
    assert all(code == 0 for code, _ in results), results
    _check_study(postgres.url, 16, epochs=3)
    assert "not-a-secret" not in "".join(out for _, out in results)


def _tunecli_on_path(folder: Path) -> dict[str, str]:
    """A PATH where ``tunecli`` is this tunecli and ``srun`` runs its command here."""
    folder.mkdir()
    (folder / "tunecli").write_text(f'#!/bin/sh\nexec {sys.executable} -c "from tunecli.cli '
                                    f'import main; main()" "$@"\n')
    (folder / "srun").write_text('#!/bin/sh\nexec "$@"\n')
    for tool in ("tunecli", "srun"):
        (folder / tool).chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_the_slurm_script_checks_and_its_worker_runs(cli, write_study, subprocess_env) -> None:
    result = cli("launch", "slurm", "tiny", "--workers", 4, "--gpus-per-worker", 2)
    assert result.exit_code == 0, result.output
    script = Path("tiny.slurm")
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    for line in ("#SBATCH --array=0-3", "#SBATCH --gres=gpu:2", "#SBATCH --signal=TERM@120",
                 "#SBATCH --requeue", 'srun tunecli worker tiny --storage "$TUNECLI_STORAGE"'):
        assert line in text
    assert "sqlite" not in text and "postgresql://" not in text.split("#SBATCH")[-1]
    # Without the storage in the environment the job says so and stops.
    env = {**subprocess_env, **_tunecli_on_path(Path.cwd() / "bin")}
    env.pop("TUNECLI_STORAGE", None)
    bare = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert bare.returncode != 0 and "export TUNECLI_STORAGE" in bare.stderr
    # With it, the array task's worker runs a study that exists (created, no trial run yet).
    api.open_for_search(write_study(), {})
    env["TUNECLI_STORAGE"] = f"sqlite:///{Path.cwd() / 'tunecli.db'}"
    env["SLURM_SUBMIT_DIR"] = str(Path.cwd())
    ran = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    finished = [t for t in optuna.load_study(study_name="tiny", storage=env["TUNECLI_STORAGE"])
                .get_trials() if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 6


def test_the_kubernetes_manifests_and_their_worker_command(cli, write_study,
                                                           subprocess_env) -> None:
    result = cli("launch", "k8s", "tiny", "--workers", 6, "--gpus-per-worker", 1,
                 "--image", "registry.example/tunecli:1")
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(Path("tiny-k8s.yaml").read_text()))
    kinds = {(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in documents}
    assert kinds == {("v1", "Service", "tunecli-postgres"),
                     ("apps/v1", "StatefulSet", "tunecli-postgres"),
                     ("apps/v1", "Deployment", "tunecli-proxy"),
                     ("v1", "Service", "tunecli-proxy"),
                     ("v1", "PersistentVolumeClaim", "tunecli-checkpoints"),
                     ("batch/v1", "Job", "tunecli-worker-tiny")}
    by_kind = {d["kind"]: d for d in documents}
    for workload in (by_kind["StatefulSet"], by_kind["Deployment"], by_kind["Job"]):
        template = workload["spec"]["template"]
        if workload["kind"] != "Job":  # a selector that matches its own pods
            labels = workload["spec"]["selector"]["matchLabels"]
            assert labels.items() <= template["metadata"]["labels"].items()
        for container in template["spec"]["containers"]:
            assert container["name"] and container["image"]
            for variable in container.get("env", []):  # secrets come from the Secret
                if "PASSWORD" in variable["name"] or "URL" in variable["name"]:
                    assert variable["valueFrom"]["secretKeyRef"]["name"] == "tunecli-storage"
    job = by_kind["Job"]["spec"]
    assert job["completionMode"] == "Indexed" and job["completions"] == job["parallelism"] == 6
    pod = job["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 120 and pod["restartPolicy"] == "OnFailure"
    worker = pod["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["image"] == "registry.example/tunecli:1"
    services = [d for d in documents if d["kind"] == "Service"]
    proxy_service = next(s for s in services if s["metadata"]["name"] == "tunecli-proxy")
    assert proxy_service["spec"]["type"] == "ClusterIP"
    assert "not-a-secret" not in Path("tiny-k8s.yaml").read_text()
    # The Job's worker command, run here against a proxy at the address it names.
    api.open_for_search(write_study(), {"budget.n_trials": 5})
    command = worker["command"]
    address = command[command.index("--storage") + 1]
    port = _free_port()
    server = _serve(f"sqlite:///{Path.cwd() / 'tunecli.db'}", port, subprocess_env)
    try:
        local = [*tunecli_command(), *command[1:]]
        local[local.index(address)] = f"grpc://127.0.0.1:{port}"
        ran = subprocess.run(local, env=subprocess_env, capture_output=True, text=True,
                             timeout=600)
        assert ran.returncode == 0, ran.stdout + ran.stderr
    finally:
        server.terminate()
        server.wait(timeout=60)
    finished = [t for t in optuna.load_study(study_name="tiny", storage="sqlite:///tunecli.db")
                .get_trials() if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 5


def test_bad_cluster_input_is_one_line(cli) -> None:
    assert "'grpc://nohost' does not name a host and a port" in cli(
        "list", "--storage", "grpc://nohost").output
    port = _free_port()
    down = cli("list", "--storage", f"grpc://127.0.0.1:{port}")
    assert down.exit_code == 2 and "nothing answers at grpc://127.0.0.1" in down.output
    assert "tunecli serve --storage" in down.output
    journal = cli("serve", "--storage", "studies.journal")
    assert journal.exit_code == 2 and "cannot serve a journal file" in journal.output
    target = cli("launch", "slurn", "tiny")
    assert target.exit_code == 2 and "Did you mean 'slurm'?" in target.output
    wait = cli("worker", "tiny", "--wait", "soon")
    assert wait.exit_code == 2 and "--wait" in wait.output


def test_a_second_serve_on_a_taken_port_is_refused(tmp_path: Path, subprocess_env) -> None:
    port = _free_port()
    first = _serve(f"sqlite:///{tmp_path / 'one.db'}", port, subprocess_env)
    try:
        second = subprocess.run([*tunecli_command(), "serve", "--storage",
                                 f"sqlite:///{tmp_path / 'two.db'}", "--port", str(port)],
                                env=subprocess_env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"port {port} is in use" in second.stderr and "--port" in second.stderr
        assert not (tmp_path / "two.db").exists()
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)


def test_a_dead_machines_trial_is_retried_by_another_without_resume(write_study,
                                                                     subprocess_env) -> None:
    """Two workers that present themselves as different machines (TUNECLI_HOST), behind
    serve: one is killed with SIGKILL mid-trial; the other sees that trial's lease stop and
    retries it from its checkpoint, and the study ends exact with nothing left running."""
    port = _free_port()
    server = _serve(f"sqlite:///{Path.cwd() / 'tunecli.db'}", port, subprocess_env)
    proxy = f"grpc://127.0.0.1:{port}"
    gate = Path.cwd() / "gate"
    study = write_study(gated(TINY_STUDY.replace("n_trials: 6", "n_trials: 4")
                              .replace("n_samples: 300", "n_samples: 4000")
                              .replace("epochs: 3", "epochs: 4")
                              .replace("type: median,", "type: none,")))
    # the second trial to train stops at batch 40 (after two epochs of 19 batches) and waits
    env = gate_env({**subprocess_env, "TUNECLI_LEASE_EVERY": "1"}, gate, hold_index=1,
                   hold_at=40)
    try:
        api.open_for_search(study, {}, storage=proxy)
        workers = [subprocess.Popen([*tunecli_command(), "worker", "tiny", "--storage", proxy],
                                    env={**env, "TUNECLI_HOST": f"machine-{name}"},
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                   for name in "ab"]
        wait_for_file(gate / "held-1", workers[0] if workers[0].poll() is None else workers[1])
        victim_pid = int((gate / "held-1").read_text())
        victim = next(w for w in workers if w.pid == victim_pid)
        survivor = next(w for w in workers if w.pid != victim_pid)
        victim.kill()
        victim.wait(timeout=30)
        code, out = _finish([survivor])[0]
        assert code == 0, out
        assert "waiting for 1 trial running elsewhere" in out
    finally:
        server.terminate()
        server.wait(timeout=60)
    trials = optuna.load_study(study_name="tiny", storage="sqlite:///tunecli.db").get_trials()
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 4
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    lost = [t for t in trials if t.state.name == "FAIL"]
    assert len(lost) == 1 and lost[0].user_attrs["fail_reason"] == attrs.LOST_LEASE
    assert lost[0].user_attrs["worker"] == f"machine-{'ab'[workers.index(victim)]}:{victim_pid}"
    retry = [t for t in trials if t.user_attrs.get("retry_of") == lost[0].number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE"
    assert min(retry[0].intermediate_values) > 1  # continued after the checkpointed epochs


def test_writes_whose_replies_are_lost_store_each_trial_once(write_study, postgres,
                                                             subprocess_env) -> None:
    """Connections dropped after two trials' creation committed (the first queued trial's and
    an asked one's) and after a trial's final state committed, their replies never arriving:
    the retries (tunecli's and Optuna's own) store no trial twice, and the study ends exact."""
    from tests.lost_replies import LostReplies

    created = (b"INSERT INTO trials ",)
    finished = (b"UPDATE trials SET state=$1, datetime_complete", b"COMPLETE")
    faults = LostReplies(postgres.port, [created, created, finished])
    study = write_study(TINY_STUDY.replace("n_trials: 6", "n_trials: 4"))
    try:
        ran = subprocess.run([*tunecli_command(), "search", str(study), "--storage",
                              faults.url(postgres.url)], env=subprocess_env,
                             capture_output=True, text=True, timeout=600)
    finally:
        faults.close()
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert faults.dropped == [created, created, finished]
    trials = optuna.load_study(study_name="tiny", storage=postgres.url).get_trials()
    counted = [t for t in trials if not t.user_attrs.get("surplus")]
    assert [t.state.name in ("COMPLETE", "PRUNED") for t in counted] == [True] * 4
    assert len({tuple(sorted(t.params.items())) for t in counted}) == 4  # none trained twice
    claims = [t.system_attrs.get(attrs.CLAIM) for t in counted]
    assert None not in claims and len(set(claims)) == 4
    assert all(t.state.name == "FAIL" and not t.params for t in trials if t not in counted)


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def test_a_locked_door_takes_tls_and_the_token_and_refuses_the_rest(
        write_study, tmp_path: Path, subprocess_env) -> None:
    cert, key = _certificate(tmp_path)
    (tmp_path / "token").write_text("s3cret-token\n")
    (tmp_path / "wrong").write_text("guess\n")
    port = _free_port()
    proxy = f"grpc://127.0.0.1:{port}"
    server = subprocess.Popen([*tunecli_command(), "serve", "--storage",
                               f"sqlite:///{tmp_path / 'locked.db'}", "--port", str(port),
                               "--tls-cert", str(cert), "--tls-key", str(key), "--token-file",
                               str(tmp_path / "token")], env=subprocess_env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = server.stdout.readline() if server.stdout else ""
    assert f"at {proxy} (TLS and a token)" in line, line
    study = write_study(TINY_STUDY.replace("n_trials: 6", "n_trials: 2"))
    locked = {**subprocess_env, "TUNECLI_TLS_CA": str(cert),
              "TUNECLI_TOKEN_FILE": str(tmp_path / "token")}
    try:
        for env, words in (
                ({**locked, "TUNECLI_TOKEN_FILE": str(tmp_path / "wrong")},
                 "refused this process's token. Set TUNECLI_TOKEN_FILE"),
                ({k: v for k, v in locked.items() if k != "TUNECLI_TOKEN_FILE"},
                 "refused this process's token"),
                ({k: v for k, v in locked.items() if k != "TUNECLI_TLS_CA"},
                 "no storage call gets through"),
                ({**locked, "TUNECLI_TOKEN_FILE": str(tmp_path / "none")},
                 "TUNECLI_TOKEN_FILE: cannot read the token file")):
            refused = subprocess.run([*tunecli_command(), "search", str(study), "--storage",
                                      proxy], env=env, capture_output=True, text=True,
                                     timeout=300)
            assert refused.returncode == 2, refused.stdout + refused.stderr
            assert words in refused.stderr and "Traceback" not in refused.stderr
        assert not optuna.get_all_study_names(f"sqlite:///{tmp_path / 'locked.db'}")
        ran = subprocess.run([*tunecli_command(), "search", str(study), "--storage", proxy],
                             env=locked, capture_output=True, text=True, timeout=600)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        listed = subprocess.run([*tunecli_command(), "list", "--storage", proxy], env=locked,
                                capture_output=True, text=True, timeout=300)
        assert listed.returncode == 0 and "tiny" in listed.stdout
    finally:
        server.terminate()
        server.wait(timeout=60)
    trials = optuna.load_study(study_name="tiny",
                               storage=f"sqlite:///{tmp_path / 'locked.db'}").get_trials()
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 2


def test_serve_beyond_loopback_without_a_lock_warns_in_one_line(tmp_path: Path,
                                                                 subprocess_env) -> None:
    port = _free_port()
    server = subprocess.Popen([*tunecli_command(), "serve", "--storage",
                               f"sqlite:///{tmp_path / 'open.db'}", "--host", "0.0.0.0",
                               "--port", str(port), "--token-file", __file__],
                              env=subprocess_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline() if server.stderr else ""
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert line.startswith("warning: the proxy listens beyond this machine without TLS:"), line

"""The Dockerfile (no Docker engine here, so it cannot be built): its facts agree with the chart,
and its Python steps work — the build stage's `pip wheel` command runs as written on a context
filtered by .dockerignore, the runtime stage's install works from those wheels alone, and the
installed entry point serves."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import chartkit
import grpc
import harness
import pytest
import yaml
from chartkit import one, pod_spec
from grpc_health.v1 import health_pb2, health_pb2_grpc


@pytest.fixture(scope="module")
def dockerfile():
    args, stages = chartkit.dockerfile_stages()
    return args, stages


def test_multi_stage_on_python_311_slim(dockerfile):
    args, stages = dockerfile
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert [s.base for s in stages] == ["python:3.11-slim", "python:3.11-slim"]
    build, runtime = stages
    assert build.name == "build" and runtime.name is None
    # The runtime stage installs only from the build stage's wheels, never from an index.
    (install,) = [r for r in runtime.all("RUN") if "pip install" in r]
    assert "--mount=type=bind,from=build,source=/wheels" in install and "--no-index" in install
    assert "'wework-platform[server]'" in install
    # Only the server extra: no dev tools in the image.
    (wheel,) = [r for r in build.all("RUN") if "pip wheel" in r]
    assert "'.[server]'" in wheel and "-c constraints.txt" in wheel and "dev" not in wheel


def test_image_facts_match_the_chart(dockerfile, rendered):
    _, stages = dockerfile
    runtime = stages[-1]
    values = yaml.safe_load((chartkit.CHART / "values.yaml").read_text())
    objects = rendered("default")
    # USER uid:gid = the pods' runAsUser/runAsGroup (runAsNonRoot needs a numeric USER).
    (user,) = runtime.all("USER")
    uid, gid = (int(x) for x in user.split(":"))
    assert uid != 0
    for ctx in (values["podSecurityContext"], values["securityContext"]):
        assert (ctx["runAsUser"], ctx["runAsGroup"]) == (uid, gid)
    assert re.search(rf"useradd [^&]*--uid {uid} --gid {gid}", " ".join(runtime.all("RUN")))
    # ENTRYPOINT = the server Deployment's command; the Jobs use the other script of the same venv.
    (entrypoint,) = runtime.all("ENTRYPOINT")
    server = pod_spec(one(objects, "Deployment", "wework-tenant"))["containers"][0]
    assert yaml.safe_load(entrypoint) == server["command"] == ["wework-server"]
    # EXPOSE covers the gRPC, metrics and callback ingress ports of the chart's defaults.
    (expose,) = runtime.all("EXPOSE")
    assert {int(p) for p in expose.split()} == {
        values["ports"]["grpc"], values["metrics"]["port"], values["callbackIngress"]["port"]}
    # Read-only root filesystem: the working directory and the embedded data dir are under /tmp,
    # which the chart mounts as an emptyDir.
    env = chartkit.dockerfile_env(runtime)
    (workdir,) = runtime.all("WORKDIR")
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(one(objects, "Deployment", "wework-tenant"))["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    for path in (workdir, env["WEWORK_DATA_DIR"], values["config"]["data_dir"]):
        assert path == "/tmp" or path.startswith("/tmp/"), path
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].split(":")[0] == env["VIRTUAL_ENV"] + "/bin"


def test_dockerignore_keeps_the_context_small():
    patterns = chartkit.dockerignore_patterns()
    excluded = lambda path: chartkit.dockerignore_excludes(path, patterns)
    for path in (".venv/bin/python", ".git/HEAD", "var/secrets.json", "tests/conftest.py", ".tools/bin/helm",
                 "charts/wework/values.yaml", "servers/wework/server/__pycache__/cli.cpython-311.pyc",
                 "__pycache__/x.pyc"):
        assert excluded(path), path
    for path in ("pyproject.toml", "constraints.txt", "README.md", "servers/wework/server/cli.py",
                 "persistence/wework/persistence/migrations/user/script.py.mako", "clients/wework/v1/tenant_pb2.py"):
        assert not excluded(path), path


def build_context(dest: Path, stage: chartkit.Stage) -> Path:
    """The files the stage COPYs, as Docker would send them (.dockerignore applied)."""
    patterns = chartkit.dockerignore_patterns()
    for copy in stage.all("COPY"):
        *sources, _target = copy.split()
        for source in sources:
            src = chartkit.ROOT / source
            files = [src] if src.is_file() else [p for p in src.rglob("*") if p.is_file()]
            for path in files:
                rel = path.relative_to(chartkit.ROOT).as_posix()
                if not chartkit.dockerignore_excludes(rel, patterns):
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, dest / rel)
    return dest


@pytest.mark.e2e
def test_the_image_build_steps_work(dockerfile, tmp_path):
    """Runs the build stage's `pip wheel` and the runtime stage's install as written, then starts
    the installed wework-server (embedded mode, as `docker run` without settings would)."""
    _, (build, runtime) = dockerfile
    context = build_context(tmp_path / "context", build)
    assert not list(context.rglob("__pycache__"))
    (wheel_step,) = [r for r in build.all("RUN") if "pip wheel" in r]
    argv = shlex.split(wheel_step)
    assert argv[0] == "pip"
    wheels = tmp_path / "wheels"
    argv = [str(wheels) if a == "/wheels" else a for a in argv]
    built = subprocess.run([sys.executable, "-m", *argv], cwd=context, capture_output=True, text=True,
                           timeout=600, check=False)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]

    # The platform's wheel: one PEP 420 namespace over the three roots, migrations included.
    (ours,) = wheels.glob("wework_platform-*.whl")
    names = set(zipfile.ZipFile(ours).namelist())
    assert "wework/__init__.py" not in names
    for expected in ("wework/server/cli.py", "wework/persistence/migrations/user/script.py.mako",
                     "wework/v1/tenant_pb2.py", "wework/client/sync.py"):
        assert expected in names, expected
    assert any(n.startswith("wework/persistence/migrations/directory/versions/") for n in names)
    # Only server dependencies: nothing of the dev extra.
    built_names = {p.name.split("-")[0].lower() for p in wheels.glob("*.whl")}
    assert {"grpcio", "sqlalchemy", "alembic", "aiomysql", "pydantic_settings"} <= built_names
    assert not built_names & {"pytest", "ruff", "grpcio_tools", "buf_bin"}

    # The runtime stage's install, from those wheels alone.
    (install_step,) = [r for r in runtime.all("RUN") if "pip install" in r]
    requirement = re.search(r"'(wework-platform\[server\])'", install_step).group(1)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-index", "--find-links",
                                str(wheels), requirement], capture_output=True, text=True, timeout=600, check=False)
    assert installed.returncode == 0, installed.stderr[-3000:]

    # The ENTRYPOINT of that venv serves, with the image's ENV, as an unprivileged user would.
    env = chartkit.dockerfile_env(runtime)
    env |= {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "VIRTUAL_ENV": str(venv), "HOME": str(tmp_path),
            "WEWORK_DATA_DIR": str(tmp_path / env["WEWORK_DATA_DIR"].lstrip("/"))}
    (entrypoint,) = runtime.all("ENTRYPOINT")
    port = harness.free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*yaml.safe_load(entrypoint), "--port", str(port)], env=env, cwd=tmp_path,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, status = time.monotonic() + 60, None
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline and proc.poll() is None and status != health_pb2.HealthCheckResponse.SERVING:
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
                except grpc.RpcError:
                    time.sleep(0.2)
        assert status == health_pb2.HealthCheckResponse.SERVING, log_path.read_text()[-4000:]
        # Published ports must reach it: the image binds every interface, not the embedded loopback.
        assert f"listening on 0.0.0.0:{port}" in log_path.read_text()
        # The installed code, not the repository's, served.
        assert str(venv) in subprocess.run([str(venv / "bin" / "python"), "-c",
                                            "import wework.server.cli as m; print(m.__file__)"],
                                           capture_output=True, text=True, check=True, env=env).stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log_path.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

"""The rendered chart really starts the platform: the migration Job's and the tenant Deployment's
containers (command, args, environment, mounted settings file, secret references) are run as local
processes against the real MariaDB and Redis, and the server answers its gRPC health checks on
the rendered port the way the kubelet's probes ask."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time

import chartkit
import grpc
import harness
import pytest
from chartkit import one, pod_spec
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import httpcall

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

SECRET_NAME = "wework-secrets"  # the chart's default secrets.existingSecret


def test_secret(name: str, string_data: dict[str, str]) -> dict:
    """The Secret an operator creates before installing (docs/helm.md), as a manifest."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": "wework"}, "stringData": string_data}


test_secret.__test__ = False  # a helper, not a test


def metrics_supported() -> bool:
    """Whether this build has the observability settings (metrics on their own port)."""
    from wework.server.settings import Settings

    return "observability" in Settings.model_fields


def run_to_completion(container: chartkit.LocalContainer, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(container.argv, env=container.env, cwd=container.cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)


def health_status(target: str, service: str | None) -> int:
    with grpc.insecure_channel(target) as channel:
        request = health_pb2.HealthCheckRequest(service=service or "")
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=2).status


@pytest.mark.parametrize(("mode", "deployment_name", "services_arg"), [
    ("per-service", "wework-tenant", "tenant"),
    ("all-in-one", "wework-server", "all"),
])
def test_rendered_deployment_starts_the_server(helm, mariadb_server, redis_server, unique_db_prefix, tmp_path,
                                               mode, deployment_name, services_arg):
    grpc_port = harness.free_port()
    overrides: dict = {
        "allInOne.enabled": mode == "all-in-one",
        "ports.grpc": grpc_port,
        "config.redis.key_prefix": f"{unique_db_prefix}:",
        "config.server.health_check_interval_seconds": 0.5,
    }
    metrics_port = None
    if metrics_supported():
        # Otherwise every test server would bind the default 9464.
        metrics_port = harness.free_port()
        overrides |= {"metrics.enabled": True, "metrics.port": metrics_port}
    objects = helm.template(set_json=overrides)

    database = harness.make_database_config(unique_db_prefix, [mariadb_server], 2)
    dumped = database.model_dump(mode="json")
    admin_key = "wwadmin_chart_test_0123456789abcdef"
    secret = test_secret(SECRET_NAME, {
        "database-directory-dsn": dumped["directory_dsn"],
        "database-shards": json.dumps(dumped["shards"]),
        "redis-url": redis_server.url,
        "admin-api-key": admin_key,
        "token-secret": "chart-test-token-secret-0123456789abcdef",
        "lookup-hash-key": "chart-test-lookup-key-0123456789abcdef",
        "encryption-keys": json.dumps({"k1": base64.b64encode(b"chart-test-key-32-bytes-long!!!!").decode()}),
    })
    chartkit.validate_k8s(secret)
    secrets = {SECRET_NAME: secret["stringData"]}
    configmaps = {o["metadata"]["name"]: o["data"] for o in chartkit.objects_of(objects, "ConfigMap")}

    # What the image adds around the chart's command: its ENV, WORKDIR and a PATH whose first entry
    # holds wework-server and wework-admin (here the virtualenv's bin instead of /opt/venv/bin).
    _, stages = chartkit.dockerfile_stages()
    image_env = chartkit.dockerfile_env(stages[-1])
    image_env.pop("PATH"), image_env.pop("VIRTUAL_ENV")
    (workdir,) = stages[-1].all("WORKDIR")
    path = f"{chartkit.VENV_BIN}:/usr/local/bin:/usr/bin:/bin"

    def local(obj: dict, name: str) -> chartkit.LocalContainer:
        pod = pod_spec(obj)
        (container,) = pod["containers"]
        return chartkit.local_container(pod, container, tmp_path / name, configmaps=configmaps, secrets=secrets,
                                        image_env=image_env, workdir=workdir, path=path)

    # The pre-install hook first: the Job's own command and settings.
    migrate = local(one(objects, "Job", "wework-migrate"), "migrate")
    assert migrate.argv == ["wework-admin", "migrate"]
    migrated = run_to_completion(migrate)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert len(mariadb_server.list_databases(unique_db_prefix + "_")) == len(harness.physical_database_names(database))

    deployment = one(objects, "Deployment", deployment_name)
    container = pod_spec(deployment)["containers"][0]
    server = local(deployment, "server")
    assert server.argv == ["wework-server", "--port", str(grpc_port), "--services", services_arg]
    assert server.env["WEWORK_CONFIG_FILE"].startswith(str(tmp_path / "server" / "volumes" / "config"))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(server.argv, env=server.env, cwd=server.cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        target = f"127.0.0.1:{ports['grpc']}"
        # The probes exactly as rendered: startup, then readiness and liveness.
        readiness = container["readinessProbe"]["grpc"]
        liveness = container["livenessProbe"]["grpc"]
        assert readiness["port"] == liveness["port"] == ports["grpc"]
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = health_status(target, readiness.get("service"))
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        assert status == health_pb2.HealthCheckResponse.SERVING, (proc.poll(), log_path.read_text()[-4000:])
        assert readiness.get("service") == ("wework.v1.TenantService" if mode == "per-service" else None)
        for service in (liveness.get("service"), "wework.v1.TenantService"):
            assert health_status(target, service) == health_pb2.HealthCheckResponse.SERVING

        # The secrets arrived: the admin key from the Secret creates a tenant in the shards of the Secret.
        from wework.client import ClientOptions, WeworkClient
        from wework.v1 import tenant_pb2 as pb

        with WeworkClient(ClientOptions(target=target, api_key=admin_key)) as client:
            tenant = client.tenants.create_tenant(
                pb.Tenant(tenant_code=f"chart-{unique_db_prefix[-8:]}", tenant_name="Chart test"))
            assert client.tenants.get_tenant(tenant.id).tenant_code == tenant.tenant_code

        # `helm test`: the rendered test pod, its Service names resolved to this host as the
        # cluster DNS would, passes for the running server and fails for the ones not running.
        test_pod = one(objects, "Pod", "wework-test-health")
        health = chartkit.local_container(test_pod["spec"], test_pod["spec"]["containers"][0], tmp_path / "test",
                                          configmaps=configmaps, secrets=secrets, image_env=image_env,
                                          workdir=workdir, path=path)
        running = f"{deployment_name}.wework.svc:{grpc_port}|"
        mine = [a for a in health.argv[3:] if a.startswith(running)]
        assert len(mine) == 1, health.argv
        local_argv = [a.replace(f"{deployment_name}.wework.svc:", "127.0.0.1:") for a in health.argv]
        passed = subprocess.run(local_argv[:3] + [m.replace(f"{deployment_name}.wework.svc:", "127.0.0.1:")
                                                  for m in mine],
                                env=health.env, cwd=health.cwd, capture_output=True, text=True, timeout=60, check=False)
        assert passed.returncode == 0 and passed.stdout.rstrip().endswith(": SERVING"), passed
        others = [a for a in local_argv[3:] if not a.startswith("127.0.0.1:")]
        if others:  # per service: the four Deployments not started here cannot answer
            failed = subprocess.run(local_argv, env={**health.env, "HEALTH_TIMEOUT_SECONDS": "2"}, cwd=health.cwd,
                                    capture_output=True, text=True, timeout=120, check=False)
            assert failed.returncode == 1, failed
            assert failed.stdout.count(": SERVING") == 1 and failed.stdout.count("UNAVAILABLE") + failed.stdout.count(
                "DEADLINE_EXCEEDED") == len(others), failed.stdout

        if metrics_port is not None:
            assert ports["metrics"] == metrics_port
            assert httpcall.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).status_code == 200

        # Stopping as the kubelet does: SIGTERM, then the grace period.
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(pod_spec(deployment)["terminationGracePeriodSeconds"])
        assert code == 0, log_path.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

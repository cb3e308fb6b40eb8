"""The Helm chart rendered by a real helm 3: lint, every value set valid against the Kubernetes
schemas, what each value set must produce, and values.schema.json refusing wrong values."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import chartkit
import pytest
import yaml
from chartkit import VALUE_SETS, one, pod_spec, values_files

SERVICE_NAMES = ("tenant", "account", "message", "callback", "report", "media")
SECRET_ENV = {
    "WEWORK_DATABASE__DIRECTORY_DSN", "WEWORK_DATABASE__SHARDS", "WEWORK_REDIS__URL",
    "WEWORK_SECURITY__ADMIN_API_KEY", "WEWORK_SECURITY__TOKEN_SECRET", "WEWORK_SECURITY__LOOKUP_HASH_KEY",
    "WEWORK_SECURITY__ENCRYPTION_KEYS",
}


def containers(obj: dict) -> list[dict]:
    return pod_spec(obj)["containers"]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def settings_file(objects: list[dict], name: str = "wework-config") -> dict:
    return yaml.safe_load(one(objects, "ConfigMap", name)["data"]["config.yaml"])


# ---- helm lint and schema validity --------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_strict(helm, value_set):
    args = ["lint", "--strict", str(chartkit.CHART)]
    for path in values_files(value_set):
        args += ["-f", str(path)]
    result = helm.run(*args)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_rendered_object_is_valid(rendered, value_set):
    objects = rendered(value_set)
    assert objects
    seen = set()
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in seen, f"{key} rendered twice"
        seen.add(key)
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "wework" and labels["app.kubernetes.io/name"] == "wework"
        if (obj["apiVersion"], obj["kind"]) in chartkit.CRD_KINDS:
            chartkit.validate_crd(obj)
        else:
            chartkit.validate_k8s(obj)
    # Secrets are referenced, never rendered.
    assert not chartkit.objects_of(objects, "Secret")


def test_the_validator_refuses_what_a_cluster_would(rendered):
    """The strict schemas must catch an unknown field and a wrong type, or the test above proves nothing."""
    import kubernetes_validate

    deployment = one(rendered("default"), "Deployment", "wework-tenant")
    chartkit.validate_k8s(deployment)
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = typo["spec"]["template"]["spec"][
        "containers"][0].pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        chartkit.validate_k8s(typo)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "2"
    with pytest.raises(kubernetes_validate.ValidationError):
        chartkit.validate_k8s(wrong_type)
    bad_probe = copy.deepcopy(deployment)
    bad_probe["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        chartkit.validate_k8s(bad_probe)


def test_the_validator_needs_no_network(rendered):
    """Validation runs in CI without network: any socket use in the validating process fails it."""
    objects = [o for o in rendered("everything") if (o["apiVersion"], o["kind"]) not in chartkit.CRD_KINDS]
    code = (
        "import json, socket, sys\n"
        "def refuse(*a, **k): raise AssertionError('network used')\n"
        "socket.socket = socket.create_connection = socket.getaddrinfo = refuse\n"
        "import kubernetes_validate\n"
        "for obj in json.load(sys.stdin): kubernetes_validate.validate(obj, sys.argv[1], strict=True)\n"
        "print('validated')\n"
    )
    result = subprocess.run([sys.executable, "-c", code, chartkit.KUBE_VERSION], input=json.dumps(objects),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and "validated" in result.stdout, result.stderr


def test_crd_checks_refuse_broken_monitoring_objects(rendered):
    objects = rendered("everything")
    monitor = one(objects, "ServiceMonitor", "wework")
    rule = one(objects, "PrometheusRule", "wework")
    chartkit.validate_crd(monitor)
    chartkit.validate_crd(rule)
    broken = copy.deepcopy(rule)
    broken["spec"]["groups"][0]["rules"][0]["expr"] = "sum(rate(x[5m])"
    with pytest.raises(AssertionError):
        chartkit.validate_crd(broken)
    broken = copy.deepcopy(monitor)
    broken["spec"]["endpoints"][0]["interval"] = "30 seconds"
    with pytest.raises(AssertionError):
        chartkit.validate_crd(broken)


# ---- what each value set renders ----------------------------------------------------------


def test_default_values(rendered):
    objects = rendered("default")
    kinds = sorted(o["kind"] for o in objects)
    # Every service: a Deployment, a PodDisruptionBudget and two Services each; the helm test Pod.
    assert kinds == ["ConfigMap", "ConfigMap", *["Deployment"] * 6, "Job", "NetworkPolicy", "Pod",
                     *["PodDisruptionBudget"] * 6, *["Service"] * 12, "ServiceAccount"]
    assert {d["metadata"]["name"] for d in chartkit.objects_of(objects, "Deployment")} == {
        f"wework-{n}" for n in SERVICE_NAMES}
    # Without callbackIngress the callback server listens on gRPC only.
    callback = containers(one(objects, "Deployment", "wework-callback"))[0]
    assert [p["name"] for p in callback["ports"]] == ["grpc"]
    assert not {"WEWORK_CALLBACK__HTTP_PORT", "WEWORK_CALLBACK__SECRET"} & env_of(callback).keys()
    account = pod_spec(one(objects, "Deployment", "wework-account"))["containers"][0]
    assert account["args"] == ["--port", "50051", "--services", "account"]
    assert account["readinessProbe"]["grpc"] == {"port": 50051, "service": "wework.v1.AccountService"}
    deployment = one(objects, "Deployment", "wework-tenant")
    assert deployment["spec"]["replicas"] == 2
    pod = pod_spec(deployment)
    (server,) = pod["containers"]
    assert server["image"] == "wework-platform:0.1.0"
    assert server["command"] == ["wework-server"]
    assert server["args"] == ["--port", "50051", "--services", "tenant"]
    assert server["ports"] == [{"name": "grpc", "containerPort": 50051, "protocol": "TCP"}]
    # Native gRPC probes: readiness asks for the service this Deployment serves.
    for probe in ("startupProbe", "readinessProbe"):
        assert server[probe]["grpc"] == {"port": 50051, "service": "wework.v1.TenantService"}
    assert server["livenessProbe"]["grpc"] == {"port": 50051}
    # Non-root, read-only root filesystem, writable /tmp only.
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    ctx = server["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    assert mounts["/etc/wework"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert volumes["config"]["configMap"]["name"] == "wework-config"
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "wework"
    # Secrets only by reference, all from the one existing Secret.
    env = env_of(server)
    assert env["WEWORK_CONFIG_FILE"]["value"] == "/etc/wework/config.yaml"
    assert SECRET_ENV <= set(env)
    for name in SECRET_ENV:
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "wework-secrets", env[name]
    assert [e for e in env.values() if "value" in e] == [env["WEWORK_CONFIG_FILE"]]
    # Services: a ClusterIP and a headless one, both selecting exactly this Deployment's pods.
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(objects, "Service", "wework-tenant")
    headless = one(objects, "Service", "wework-tenant-headless")
    assert headless["spec"]["clusterIP"] == "None" and "clusterIP" not in service["spec"]
    for svc in (service, headless):
        assert svc["spec"]["ports"][0]["targetPort"] == "grpc" and svc["spec"]["ports"][0]["port"] == 50051
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "tenant"
    pdb = one(objects, "PodDisruptionBudget", "wework-tenant")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["maxUnavailable"] == 1
    # The settings file: the chart's settings, and the checksum that rolls pods when they change.
    settings = settings_file(objects)
    assert settings["security"] == {"active_encryption_key_id": "k1"}
    assert settings["data_dir"].startswith("/tmp/")
    assert "port" not in settings and "services" not in settings["server"]
    assert len(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]) == 64


def test_default_migration_hook(rendered):
    objects = rendered("default")
    job = one(objects, "Job", "wework-migrate")
    hook_config = one(objects, "ConfigMap", "wework-migrate-config")
    for obj in (job, hook_config):
        assert obj["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    # The hook's own settings file exists before the Job and equals the servers' one.
    assert int(hook_config["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert hook_config["data"] == one(objects, "ConfigMap", "wework-config")["data"]
    pod = pod_spec(job)
    (container,) = pod["containers"]
    assert container["command"] + container["args"] == ["wework-admin", "migrate"]
    assert pod["restartPolicy"] == "Never" and "serviceAccountName" not in pod
    assert {v["name"]: v for v in pod["volumes"]}["config"]["configMap"]["name"] == "wework-migrate-config"
    assert env_of(container).keys() == env_of(containers(one(objects, "Deployment", "wework-tenant"))[0]).keys()


def test_all_in_one(rendered):
    objects = rendered("all-in-one")
    (deployment,) = chartkit.objects_of(objects, "Deployment")
    assert deployment["metadata"]["name"] == "wework-server" and deployment["spec"]["replicas"] == 3
    (server,) = containers(deployment)
    assert server["args"] == ["--port", "50051", "--services", "all"]
    # The whole server's health: "" is every service at once.
    assert server["readinessProbe"]["grpc"] == {"port": 50051}
    assert {p["name"]: p["containerPort"] for p in server["ports"]} == {"grpc": 50051, "http-callback": 8080}
    ports = {p["name"]: p["port"] for p in one(objects, "Service", "wework-server")["spec"]["ports"]}
    assert ports == {"grpc": 50051, "http-callback": 8080}
    one(objects, "Service", "wework-server-headless")


def test_everything(rendered):
    objects = rendered("everything")
    deployments = {d["metadata"]["name"]: d for d in chartkit.objects_of(objects, "Deployment")}
    assert set(deployments) == {f"wework-{n}" for n in SERVICE_NAMES} | {
        "wework-worker-dispatch", "wework-worker-callbacks"}
    for name in SERVICE_NAMES:
        server = containers(deployments[f"wework-{name}"])[0]
        assert server["args"] == ["--port", "50051", "--services", name]
        assert server["readinessProbe"]["grpc"]["service"] == f"wework.v1.{name.title()}Service"
        ports = {p["name"] for p in server["ports"]}
        assert ports == ({"grpc", "metrics", "http-callback"} if name == "callback" else {"grpc", "metrics"})
    # The callback server listens for the provider on every interface, with the signing secret by
    # reference (the settings refuse an unsigned ingress beyond loopback).
    callback_env = env_of(containers(deployments["wework-callback"])[0])
    assert callback_env["WEWORK_CALLBACK__HTTP_HOST"]["value"] == "0.0.0.0"
    assert callback_env["WEWORK_CALLBACK__HTTP_PORT"]["value"] == "8080"
    assert callback_env["WEWORK_CALLBACK__SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "wework-app", "key": "provider-callback-secret"}  # everything.yaml names its Secret
    assert "WEWORK_CALLBACK__HTTP_PORT" not in env_of(containers(deployments["wework-tenant"])[0])
    # Media in S3: the bucket and SSE in the settings file, endpoint and credentials by reference.
    media_env = env_of(containers(deployments["wework-media"])[0])
    for var, key in (("WEWORK_MEDIA__S3__ENDPOINT_URL", "object-store-endpoint"),
                     ("WEWORK_MEDIA__S3__ACCESS_KEY_ID", "s3-access-key-id"),
                     ("WEWORK_MEDIA__S3__SECRET_ACCESS_KEY", "s3-secret-access-key")):
        assert media_env[var]["valueFrom"]["secretKeyRef"] == {"name": "object-store", "key": key, "optional": True}
    media = settings_file(objects)["media"]
    assert media == {"backend": "s3", "key_prefix": "prod/", "s3": {
        "bucket": "wework-prod-media", "region": "eu-west-1", "addressing_style": "virtual",
        "server_side_encryption": "aws:kms", "sse_kms_key_id": "alias/wework"}}
    # Workers: their own command, no gRPC port or probes, a metrics Service.
    worker = containers(deployments["wework-worker-dispatch"])[0]
    assert worker["command"] == ["wework-worker"] and worker["args"] == ["dispatch"]
    assert [p["name"] for p in worker["ports"]] == ["metrics"] and "readinessProbe" not in worker
    assert [p["name"] for p in one(objects, "Service", "wework-worker-dispatch")["spec"]["ports"]] == ["metrics"]
    # HPA everywhere but where a component switched it off (a false override must win).
    hpas = {h["metadata"]["name"]: h for h in chartkit.objects_of(objects, "HorizontalPodAutoscaler")}
    assert set(hpas) == set(deployments) - {"wework-worker-callbacks"}
    for name, deployment in deployments.items():
        assert ("replicas" in deployment["spec"]) == (name not in hpas), name
    assert deployments["wework-worker-callbacks"]["spec"]["replicas"] == 1
    message_hpa = hpas["wework-message"]["spec"]
    assert (message_hpa["minReplicas"], message_hpa["maxReplicas"]) == (3, 20)
    assert {m["resource"]["name"] for m in message_hpa["metrics"]} == {"cpu", "memory"}
    assert hpas["wework-tenant"]["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "wework-tenant"}
    pdbs = {p["metadata"]["name"]: p["spec"] for p in chartkit.objects_of(objects, "PodDisruptionBudget")}
    assert "wework-report" not in pdbs and pdbs["wework-callback"] == {
        "minAvailable": "50%", "selector": pdbs["wework-callback"]["selector"]}
    # Metrics: declared, written into the settings, scraped once per pod (not via the headless twin).
    assert settings_file(objects)["observability"] == {"metrics_port": 9464}
    monitor = one(objects, "ServiceMonitor", "wework")
    selected = [s["metadata"]["name"] for s in chartkit.objects_of(objects, "Service")
                if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert sorted(selected) == sorted(deployments)
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = [r["alert"] for r in one(objects, "PrometheusRule", "wework")["spec"]["groups"][0]["rules"]]
    assert sorted(alerts) == ["WeworkAccountsOffline", "WeworkDispatchLagHigh", "WeworkHighErrorRate",
                              "WeworkQueueDepthHigh", "WeworkVerifyDifferences", "WeworkWebhookEndpointsDisabled"]
    # CronJobs.
    maintain = one(objects, "CronJob", "wework-maintain")
    (job,) = pod_spec(maintain)["containers"]
    assert job["command"] + job["args"] == ["wework-admin", "maintain", "--verbose"]
    assert maintain["spec"]["concurrencyPolicy"] == "Forbid"
    backup = one(objects, "CronJob", "wework-backup")
    (job,) = pod_spec(backup)["containers"]
    assert job["command"] == ["/bin/sh", "-c"] and "wework-admin backup --output \"/backup/" in job["args"][0]
    volumes = {v["name"]: v for v in pod_spec(backup)["volumes"]}
    assert volumes["backup"]["persistentVolumeClaim"]["claimName"] == "wework-backups"
    assert {"name": "backup", "mountPath": "/backup"} in job["volumeMounts"]
    # Secrets from two Secrets, one optional key, extra envFrom.
    env = env_of(containers(deployments["wework-tenant"])[0])
    assert env["WEWORK_DATABASE__SHARDS"]["valueFrom"]["secretKeyRef"] == {"name": "wework-db", "key": "shards"}
    assert env["WEWORK_REDIS__URL"]["valueFrom"]["secretKeyRef"]["name"] == "wework-app"
    assert env["WEWORK_PROVIDER__API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert env["TZ"] == {"name": "TZ", "value": "UTC"}
    assert containers(deployments["wework-tenant"])[0]["envFrom"] == [{"secretRef": {"name": "wework-extra"}}]
    # Spread constraints get this component's selector.
    (tsc,) = pod_spec(deployments["wework-message"])["topologySpreadConstraints"]
    assert tsc["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "message"
    for name, deployment in deployments.items():
        pod = pod_spec(deployment)
        assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}], name
        assert pod["priorityClassName"] == "high" and pod["tolerations"][0]["value"] == "wework"


def test_minimal(rendered):
    objects = rendered("minimal")
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "Deployment", "Service"]
    deployment = one(objects, "Deployment", "wework-tenant")
    assert deployment["spec"]["replicas"] == 1
    pod = pod_spec(deployment)
    assert pod["serviceAccountName"] == "default" and "lifecycle" not in pod["containers"][0]


def test_custom_image_ports_and_resources(rendered):
    objects = rendered("custom-image")
    image = ("registry.example.com/team/wework-platform@sha256:"
             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    pods = [pod_spec(o) for o in objects if o["kind"] in ("Deployment", "Job")]
    assert len(pods) == 7  # tenant, account, message, callback, report, media, the migration Job
    for pod in pods:
        assert [(c["image"], c["imagePullPolicy"]) for c in pod["containers"]] == [(image, "Always")]
    deployment = one(objects, "Deployment", "platform-tenant")
    assert deployment["spec"]["replicas"] == 4
    (server,) = containers(deployment)
    assert server["args"][:2] == ["--port", "6000"] and server["ports"][0]["containerPort"] == 6000
    assert server["readinessProbe"]["grpc"]["port"] == 6000 and server["livenessProbe"]["grpc"]["port"] == 6000
    # The tenant's own resources replace the defaults key by key: no cpu limit survives from server.
    assert server["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"},
                                   "limits": {"cpu": "2", "memory": "1Gi"}}
    assert one(objects, "Service", "platform-tenant")["spec"]["ports"][0]["port"] == 6000
    (migrate,) = pod_spec(one(objects, "Job", "platform-migrate"))["containers"]
    assert migrate["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi"}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert volumes["tmp"]["emptyDir"]["sizeLimit"] == "1Gi"


def test_service_names_follow_the_server(helm):
    """Every service the server implements has a switch in the chart, named by its proto service."""
    import importlib

    from wework.server.settings import ALL_SERVICES

    values = yaml.safe_load((chartkit.CHART / "values.yaml").read_text())
    assert tuple(values["services"]) == SERVICE_NAMES
    assert set(ALL_SERVICES) <= set(SERVICE_NAMES)
    # Default-on exactly where the image implements the service (tenant today).
    assert values["services"]["tenant"]["enabled"] is True
    for name in ALL_SERVICES:
        module = importlib.import_module(f"wework.v1.{name}_pb2")
        assert f"{name.title()}Service" in module.DESCRIPTOR.services_by_name
        assert module.DESCRIPTOR.package == "wework.v1"


# ---- values.schema.json --------------------------------------------------------------------

BAD_VALUES = [
    ({"server.replicas": "two"}, "server.replicas"),
    ({"services.tenant.replicas": -1}, "services.tenant.replicas"),
    ({"services.chat": {"enabled": True}}, "chat"),
    ({"secrets.existingSecret": ""}, "secrets.existingSecret"),
    ({"secrets.env.WEWORK_PROVIDER__API_KEY": {"secret": "provider"}}, "key"),
    ({"secrets.env.REDIS_URL": {"key": "redis-url"}}, "REDIS_URL"),
    ({"config.security.admin_api_key": "wwadmin_plaintext"}, "config.security.admin_api_key"),
    ({"config.server.services": ["tenant"]}, "config.server.services"),
    ({"image.pullPolicy": "Sometimes"}, "image.pullPolicy"),
    ({"image.digest": "latest"}, "image.digest"),
    ({"ports.grpc": 70000}, "ports.grpc"),
    ({"securityContext.runAsUser": 0}, "securityContext.runAsUser"),
    ({"podSecurityContext.runAsNonRoot": False}, "podSecurityContext.runAsNonRoot"),
    ({"metrics.serviceMonitor.enabled": True}, "metrics.enabled"),
    ({"cronJobs.backup.enabled": True}, "cronJobs.backup.existingClaim"),
    ({"cronJobs.maintain.schedule": "daily"}, "cronJobs.maintain.schedule"),
    ({"workers.dispatch.command": []}, "workers.dispatch.command"),
    ({"server.autoscaling.enabled": "yes"}, "server.autoscaling.enabled"),
    ({"server.probes.liveness.periodSeconds": 0}, "server.probes.liveness.periodSeconds"),
    ({"server.resources.requests.cpu": "lots"}, "server.resources.requests.cpu"),
    ({"allInOne.replicaz": 2}, "replicaz"),
    ({"config.media.s3.secret_access_key": "plaintext"}, "config.media.s3.secret_access_key"),
    ({"media.backend": "ftp"}, "media.backend"),
    ({"media.s3.serverSideEncryption": "rot13"}, "media.s3.serverSideEncryption"),
]


@pytest.mark.parametrize(("set_json", "named"), BAD_VALUES, ids=[next(iter(s)) for s, _ in BAD_VALUES])
def test_schema_refuses_wrong_values(helm, set_json, named):
    error = helm.template_fails(set_json=set_json)
    assert "values don't meet the specifications of the schema" in error, error
    assert named in error, error


def test_schema_accepts_the_documented_overrides(helm):
    objects = helm.template(set_json={
        "secrets.env.WEWORK_REDIS__URL": None,  # dropped: Redis without a password, from config
        "config.redis.url": "redis://redis:6379/0",
        "services.tenant.podDisruptionBudget": {"enabled": True, "minAvailable": 1},
        "server.autoscaling.targetMemoryUtilizationPercentage": 75,
    })
    (server,) = containers(one(objects, "Deployment", "wework-tenant"))
    assert "WEWORK_REDIS__URL" not in env_of(server)
    assert settings_file(objects)["redis"]["url"] == "redis://redis:6379/0"
    assert one(objects, "PodDisruptionBudget", "wework-tenant")["spec"]["minAvailable"] == 1


def test_chart_requires_native_grpc_probes(helm):
    """gRPC probes are GA from Kubernetes 1.27: older clusters are refused at install time."""
    error = helm.template_fails(kube_version="1.26.0")
    assert "kubeVersion" in error or "incompatible" in error, error


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_install_notes_render(helm, tmp_path, value_set):
    """NOTES.txt is rendered only by a real install; render it through tpl in a copy of the chart."""
    import shutil

    chart = tmp_path / "wework"
    shutil.copytree(chartkit.CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: |\n{{ tpl (.Files.Get "notes.txt") . | indent 4 }}\n')
    args = ["template", "wework", str(chart), "--namespace", "wework", "--kube-version", chartkit.KUBE_VERSION,
            "--show-only", "templates/zz-notes.yaml"]
    for path in values_files(value_set):
        args += ["-f", str(path)]
    notes = yaml.safe_load(helm.run(*args).stdout)["data"]["notes"]
    servers = [d for d in chartkit.objects_of(helm.template(values_files(value_set)), "Deployment")
               if d["spec"]["template"]["spec"]["containers"][0]["name"] == "server"]
    headless = "-headless" if value_set != "minimal" else ""
    for deployment in servers:
        assert f"dns:///{deployment['metadata']['name']}{headless}.wework.svc:" in notes, notes
    assert ("-headless" in notes) == bool(headless)
    assert "port-forward svc/" in notes and "<no value>" not in notes, notes
    assert ("helm test wework -n wework" in notes) == (value_set != "minimal"), notes  # minimal: no test pod

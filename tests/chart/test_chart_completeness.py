"""What well-kept community charts offer, rendered by the real helm: a namespace on every object,
the NetworkPolicy, the callback Ingress and HTTPRoute, extra env/volumes/containers on every
workload, spreading by default, Chart.yaml metadata and the `helm test` pod."""

from __future__ import annotations

import copy

import chartkit
import pytest
import yaml
from chartkit import VALUE_SETS, one, pod_spec, values_files

WORKLOAD_KINDS = ("Deployment", "Job", "CronJob", "Pod")


def workloads(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


def spec_of(obj: dict) -> dict:
    return obj["spec"] if obj["kind"] == "Pod" else pod_spec(obj)


def template_labels(obj: dict) -> dict:
    if obj["kind"] == "Pod":
        return obj["metadata"]["labels"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return obj["spec"]["template"]["metadata"]["labels"]


# ---- namespaces -----------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_object_names_its_namespace(rendered, value_set):
    for obj in rendered(value_set):
        assert obj["metadata"].get("namespace") == "wework", (obj["kind"], obj["metadata"]["name"])


def test_the_value_sets_render_every_template(helm):
    """So that the namespace check above (and the schema validation) sees every template."""
    sources = set()
    for value_set in VALUE_SETS:
        out = helm.run(*helm.template_args(values_files(value_set))).stdout
        sources |= {line.split("templates/", 1)[1] for line in out.splitlines() if line.startswith("# Source: ")}
    templates = {str(p.relative_to(chartkit.CHART / "templates")) for p in (chartkit.CHART / "templates").rglob("*")
                 if p.is_file() and p.suffix == ".yaml"}
    assert templates == sources


def test_namespace_override_moves_every_object(helm):
    objects = helm.template(values_files("everything"), {"namespaceOverride": "platform"})
    assert {o["metadata"]["namespace"] for o in objects} == {"platform"}
    # What names a namespace inside a spec follows it: the helm test's targets.
    args = one(objects, "Pod", "wework-test-health")["spec"]["containers"][0]["args"]
    assert all(".platform.svc:" in a for a in args), args


# ---- NetworkPolicy --------------------------------------------------------------------------


def rule_ports(rule: dict) -> set[tuple[int, str]]:
    return {(p["port"], p["protocol"]) for p in rule["ports"]}


def test_network_policy_defaults(rendered):
    objects = rendered("default")
    (policy,) = chartkit.objects_of(objects, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    # It covers every pod the release runs: servers, the migration Job, the helm test pod.
    for obj in workloads(objects):
        assert spec["podSelector"]["matchLabels"].items() <= template_labels(obj).items(), obj["metadata"]["name"]
    # In: gRPC from anyone; no metrics or callback port while those are off.
    assert [(rule_ports(r), r.get("from")) for r in spec["ingress"]] == [({(50051, "TCP")}, None)]
    # Out: the release's own gRPC (helm test), DNS, MariaDB, Redis, provider and webhooks by port.
    egress = [(rule_ports(r), r.get("to")) for r in spec["egress"]]
    assert egress == [
        ({(50051, "TCP")}, [{"podSelector": {"matchLabels": spec["podSelector"]["matchLabels"]}}]),
        ({(53, "UDP"), (53, "TCP")}, None),
        ({(3306, "TCP")}, None),
        ({(6379, "TCP")}, None),
        ({(443, "TCP"), (80, "TCP")}, None),
        ({(443, "TCP"), (80, "TCP")}, None),
    ]


def ns(name: str) -> dict:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def test_network_policy_configured(rendered):
    objects = rendered("everything")
    spec = one(objects, "NetworkPolicy", "wework")["spec"]
    own = {"podSelector": {"matchLabels": spec["podSelector"]["matchLabels"]}}
    ingress = {tuple(sorted(rule_ports(r))): r.get("from") for r in spec["ingress"]}
    # Restricted gRPC still lets the release's own pods in (the helm test).
    assert ingress == {((50051, "TCP"),): [ns("backends"), own], ((9464, "TCP"),): [ns("monitoring")],
                       ((8080, "TCP"),): [ns("ingress-nginx")]}
    # The ports really are the pods' ports.
    callback = pod_spec(one(objects, "Deployment", "wework-callback"))["containers"][0]
    assert {p["containerPort"] for p in callback["ports"]} == {50051, 9464, 8080}
    egress = [(rule_ports(r), r.get("to")) for r in spec["egress"]]
    assert ({(53, "UDP"), (53, "TCP")}, [{**ns("kube-system"), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]) in egress
    assert ({(3306, "TCP"), (3307, "TCP")}, [{"ipBlock": {"cidr": "10.20.0.0/16"}}]) in egress
    assert ({(4318, "TCP")}, [ns("observability")]) in egress
    # Webhooks switched off: only the provider's rule keeps 443.
    assert [p for p, _ in egress].count({(443, "TCP"), (80, "TCP")}) == 1


# ---- the provider's callback endpoint from outside ------------------------------------------


def test_callback_ingress_and_http_route_reach_the_callback_port(rendered):
    from wework.server.ingress.http import PATH

    objects = rendered("everything")
    ingress = one(objects, "Ingress", "wework-callback-ingress")
    route = one(objects, "HTTPRoute", "wework-callback-route")
    service = one(objects, "Service", "wework-callback")
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["callbacks.example.com"], "secretName": "wework-callbacks-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "callbacks.example.com"
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == (PATH, "Exact")
    assert path["backend"]["service"] == {"name": "wework-callback", "port": {"name": "http-callback"}}
    assert "http-callback" in ports
    spec = route["spec"]
    assert spec["parentRefs"] == [{"name": "public", "namespace": "gateways", "sectionName": "https"}]
    assert spec["hostnames"] == ["callbacks.example.com"]
    (rule,) = spec["rules"]
    assert rule["matches"] == [{"path": {"type": "Exact", "value": PATH}, "method": "POST"}]
    assert rule["backendRefs"] == [{"name": "wework-callback", "port": ports["http-callback"]}]


def test_all_in_one_routes_to_the_server(helm):
    objects = helm.template(values_files("all-in-one"), {
        "callbackIngress.ingress": {"enabled": True, "hosts": ["cb.example.com"]},
        "callbackIngress.httpRoute": {"enabled": True, "parentRefs": [{"name": "gw"}]}})
    backend = one(objects, "Ingress", "wework-callback-ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"]["name"] == "wework-server"
    assert one(objects, "HTTPRoute", "wework-callback-route")["spec"]["rules"][0]["backendRefs"][0]["name"] == \
        "wework-server"


def test_http_route_checks_refuse_what_the_gateway_api_refuses(rendered):
    route = one(rendered("everything"), "HTTPRoute", "wework-callback-route")
    chartkit.validate_crd(route)
    for breakage in (
        lambda s: s["rules"][0]["matches"][0]["path"].update(type="Prefix"),
        lambda s: s["rules"][0]["backendRefs"][0].pop("port"),
        lambda s: s.update(parentRef=s.pop("parentRefs")),
        lambda s: s.update(hostnames=["Callbacks_Example"]),
        lambda s: s["rules"][0]["matches"][0].update(method="FETCH"),
    ):
        broken = copy.deepcopy(route)
        breakage(broken["spec"])
        with pytest.raises((AssertionError, KeyError)):
            chartkit.validate_crd(broken)


@pytest.mark.parametrize(("set_json", "named"), [
    ({"callbackIngress.ingress": {"enabled": True, "hosts": ["cb.example.com"]}}, "callbackIngress.enabled"),
    ({"callbackIngress.enabled": True, "callbackIngress.ingress": {"enabled": True}}, "hosts"),
    ({"callbackIngress.enabled": True, "callbackIngress.httpRoute": {"enabled": True}}, "parentRefs"),
    ({"networkPolicy.egress.mariadb.ports": []}, "networkPolicy.egress.mariadb.ports"),
    ({"server.sidecars": [{"name": "x"}]}, "image"),
    ({"migrations.extraVolumeMounts": [{"name": "x"}]}, "mountPath"),
    ({"dashboards.label": ""}, "dashboards.label"),
    ({"namespaceOverride": "Not_A_Namespace"}, "namespaceOverride"),
])
def test_schema_refuses_wrong_new_values(helm, set_json, named):
    error = helm.template_fails(set_json=set_json)
    assert "values don't meet the specifications of the schema" in error and named in error, error


def test_routes_without_a_callback_deployment_are_refused(helm):
    error = helm.template_fails(set_json={
        "callbackIngress.enabled": True, "services.callback.enabled": False,
        "callbackIngress.ingress": {"enabled": True, "hosts": ["cb.example.com"]}})
    assert "services.callback.enabled or allInOne.enabled" in error, error


# ---- extras on every workload ---------------------------------------------------------------


def test_extras_reach_every_workload(rendered):
    objects = rendered("everything")
    for deployment in chartkit.objects_of(objects, "Deployment"):
        pod = pod_spec(deployment)
        name = deployment["metadata"]["name"]
        assert [c["name"] for c in pod["containers"]][1:] == ["log-shipper"], name
        assert [c["name"] for c in pod["initContainers"]] == ["wait-for-db"], name
        assert {"name": "db-ca", "mountPath": "/etc/wework-db-ca", "readOnly": True} in pod["containers"][0][
            "volumeMounts"], name
        assert {v["name"] for v in pod["volumes"]} == {"config", "tmp", "db-ca"}, name
    # The migration Job: the servers' env, volumes and mounts, then its own; its own init
    # container; no server sidecar (it would keep the Job from finishing).
    job = pod_spec(one(objects, "Job", "wework-migrate"))
    (migrate,) = job["containers"]
    env = [e["name"] for e in migrate["env"]]
    assert env[-2:] == ["TZ", "WEWORK_LOGGING__LEVEL"]
    assert [c["name"] for c in job["initContainers"]] == ["wait-for-db"]
    assert "db-ca" in {v["name"] for v in job["volumes"]}
    # CronJobs: the servers' extras plus their own.
    maintain = pod_spec(one(objects, "CronJob", "wework-maintain"))
    assert {v["name"] for v in maintain["volumes"]} == {"config", "tmp", "db-ca", "scratch"}
    assert {m["mountPath"] for m in maintain["containers"][0]["volumeMounts"]} >= {"/scratch", "/etc/wework-db-ca"}
    assert "initContainers" not in maintain and len(maintain["containers"]) == 1
    # Nothing extra by default.
    for obj in workloads(rendered("default")):
        spec = spec_of(obj)
        assert "initContainers" not in spec and len(spec["containers"]) == 1, obj["metadata"]["name"]


# ---- spreading ------------------------------------------------------------------------------


def test_pods_spread_over_zones_and_nodes_by_default(rendered):
    for deployment in chartkit.objects_of(rendered("default"), "Deployment"):
        constraints = pod_spec(deployment)["topologySpreadConstraints"]
        assert [c["topologyKey"] for c in constraints] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        for c in constraints:
            # Soft (never blocks scheduling), per Deployment, per rollout revision.
            assert c["whenUnsatisfiable"] == "ScheduleAnyway" and c["matchLabelKeys"] == ["pod-template-hash"]
            assert c["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert "topologySpreadConstraints" not in pod_spec(one(rendered("minimal"), "Deployment", "wework-tenant"))


# ---- Chart.yaml -----------------------------------------------------------------------------


def test_chart_metadata():
    chart = yaml.safe_load((chartkit.CHART / "Chart.yaml").read_text())
    for key in ("home", "sources", "maintainers", "keywords", "kubeVersion", "annotations", "description"):
        assert chart.get(key), key
    assert all(m.get("name") for m in chart["maintainers"])
    assert chart["annotations"]["artifacthub.io/license"]
    images = yaml.safe_load(chart["annotations"]["artifacthub.io/images"])
    assert images == [{"name": "wework-platform", "image": f"wework-platform:{chart['appVersion']}"}]


# ---- helm test ------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", ["default", "all-in-one", "custom-image"])
def test_helm_test_pod_asks_every_server(rendered, value_set):
    objects = rendered(value_set)
    (pod,) = chartkit.objects_of(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    # The chart's own image, nothing pulled for the test.
    server = pod_spec(chartkit.objects_of(objects, "Deployment")[0])["containers"][0]
    assert container["image"] == server["image"] and container["command"][:2] == ["python", "-c"]
    expected = []
    for deployment in chartkit.objects_of(objects, "Deployment"):
        probe = pod_spec(deployment)["containers"][0]["readinessProbe"]["grpc"]
        expected.append(f"{deployment['metadata']['name']}.wework.svc:{probe['port']}|{probe.get('service', '')}")
    assert sorted(container["args"]) == sorted(expected)

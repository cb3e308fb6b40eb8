"""What the chart tests share: a real helm, rendering, Kubernetes schema validation, the Dockerfile's
facts, and turning a rendered container into a local process the way a kubelet would start it.

Imported as `chartkit` (tests/chart is on sys.path through pytest's rootdir-relative imports).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "wework"
VALUES_DIR = Path(__file__).resolve().parent / "values"
DOCKERFILE = ROOT / "Dockerfile"
# The Kubernetes version the manifests are validated against (and the chart is rendered for).
KUBE_VERSION = "1.30.0"
# Custom resources (the Prometheus operator's, the Gateway API's HTTPRoute): kubernetes-validate
# ships only core schemas, and no registry package ships the Gateway API's own JSON schemas.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule"),
             ("gateway.networking.k8s.io/v1", "HTTPRoute")}
VENV_BIN = Path(sys.executable).parent
# The value sets under tests/chart/values that every render test covers; "default" is the chart's
# own values.yaml alone.
VALUE_SETS = ("default", "all-in-one", "everything", "minimal", "custom-image")


def values_files(name: str) -> tuple[Path, ...]:
    return () if name == "default" else (VALUES_DIR / f"{name}.yaml",)


class HelmError(RuntimeError):
    pass


def install_helm() -> Path:
    """Runs scripts/install-helm.sh (idempotent) and returns .tools/bin/helm."""
    result = subprocess.run([str(ROOT / "scripts" / "install-helm.sh")], capture_output=True, text=True,
                            timeout=600, check=False)
    if result.returncode != 0:
        raise HelmError(f"scripts/install-helm.sh failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return ROOT / ".tools" / "bin" / "helm"


@dataclass
class Helm:
    binary: Path
    home: Path  # helm's cache/config/data dirs, so tests never touch the user's

    def run(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        result = subprocess.run([str(self.binary), *map(str, args)], capture_output=True, text=True, env=env,
                                timeout=120, check=False)
        if check and result.returncode != 0:
            raise HelmError(f"helm {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr}")
        return result

    def template_args(self, values: tuple[str | Path, ...] = (), set_json: dict[str, Any] | None = None,
                      *, release: str = "wework", namespace: str = "wework",
                      kube_version: str = KUBE_VERSION) -> list[str]:
        args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", kube_version]
        for path in values:
            args += ["-f", str(path)]
        for key, value in (set_json or {}).items():
            # --set-json keeps types: --set would turn "2" into a number and "" into nothing.
            args += ["--set-json", f"{key}={json.dumps(value)}"]
        return args

    def template(self, values: tuple[str | Path, ...] = (), set_json: dict[str, Any] | None = None,
                 **kwargs: Any) -> list[dict]:
        out = self.run(*self.template_args(values, set_json, **kwargs)).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    def template_fails(self, values: tuple[str | Path, ...] = (), set_json: dict[str, Any] | None = None,
                       **kwargs: Any) -> str:
        """Renders what must be refused; returns helm's error text."""
        result = self.run(*self.template_args(values, set_json, **kwargs), check=False)
        if result.returncode == 0:
            raise AssertionError(f"helm template accepted {set_json or values}")
        return result.stderr


# ---- rendered objects ----------------------------------------------------------------------


def objects_of(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(found) != 1:
        names = sorted(o["metadata"]["name"] for o in objects_of(objects, kind))
        raise AssertionError(f"expected one {kind} {name!r}, found {len(found)}; {kind}s: {names}")
    return found[0]


def pod_spec(obj: dict) -> dict:
    """The pod spec of a Deployment, Job or CronJob."""
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def validate_k8s(obj: dict) -> None:
    """Strict schema validation (unknown fields are errors) for the pinned Kubernetes version."""
    import kubernetes_validate

    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def validate_crd(obj: dict) -> None:
    """kubernetes-validate has no schemas for CRDs: check what the Prometheus operator and the
    Gateway API (v1 HTTPRoute, its published field set) need."""
    meta = obj.get("metadata", {})
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta.get("name", "")), meta
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta.get("namespace", "")), meta
    assert all(isinstance(v, str) for v in meta.get("labels", {}).values()), meta
    spec = obj["spec"]
    if obj["kind"] == "HTTPRoute":
        _validate_http_route(spec)
    elif obj["kind"] == "ServiceMonitor":
        assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}, spec
        assert spec["selector"]["matchLabels"], spec
        assert all(isinstance(v, str) for v in spec["selector"]["matchLabels"].values())
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels"}, endpoint
            assert isinstance(endpoint["port"], str) and endpoint["path"].startswith("/")
            for key in ("interval", "scrapeTimeout"):
                assert re.fullmatch(r"([0-9]+(ms|s|m|h))+", endpoint[key]), endpoint
    else:
        assert set(spec) == {"groups"}, spec
        for group in spec["groups"]:
            assert set(group) <= {"name", "rules", "interval"} and group["name"], group
            assert group["rules"], group
            for rule in group["rules"]:
                assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
                assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]), rule
                assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule
                assert _balanced(rule["expr"]), rule["expr"]
                assert re.fullmatch(r"([0-9]+(ms|s|m|h))+", rule["for"]), rule
                assert all(isinstance(v, str) for v in {**rule["labels"], **rule["annotations"]}.values())


HOSTNAME = r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}


def _validate_http_route(spec: dict) -> None:
    """gateway.networking.k8s.io/v1 HTTPRouteSpec: known fields only, required ones present."""
    assert set(spec) <= {"parentRefs", "hostnames", "rules"}, spec
    assert 1 <= len(spec["parentRefs"]) <= 32, spec
    for ref in spec["parentRefs"]:
        assert set(ref) <= {"group", "kind", "namespace", "name", "sectionName", "port"}, ref
        assert isinstance(ref["name"], str) and ref["name"], ref
        assert all(isinstance(ref[k], str) for k in ("group", "kind", "namespace", "sectionName") if k in ref), ref
    for host in spec.get("hostnames", []):
        assert re.fullmatch(HOSTNAME, host) and len(host) <= 253, host
    assert 1 <= len(spec["rules"]) <= 16, spec
    for rule in spec["rules"]:
        assert set(rule) <= {"name", "matches", "filters", "backendRefs", "timeouts", "retry",
                             "sessionPersistence"}, rule
        for match in rule.get("matches", []):
            assert set(match) <= {"path", "headers", "queryParams", "method"}, match
            if "path" in match:
                assert set(match["path"]) <= {"type", "value"}, match
                assert match["path"]["type"] in {"Exact", "PathPrefix", "RegularExpression"}, match
                assert match["path"]["value"].startswith("/"), match
            assert match.get("method", "GET") in HTTP_METHODS, match
        for backend in rule.get("backendRefs", []):
            assert set(backend) <= {"group", "kind", "name", "namespace", "port", "weight", "filters"}, backend
            assert isinstance(backend["name"], str) and backend["name"], backend
            if backend.get("kind", "Service") == "Service":  # a Service backend needs its port
                assert isinstance(backend["port"], int) and 1 <= backend["port"] <= 65535, backend


def _balanced(expr: str) -> bool:
    pairs, stack, quoted = {")": "(", "]": "[", "}": "{"}, [], False
    for ch in expr:
        if ch == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack and not quoted


# ---- the Dockerfile ------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, rest)

    def all(self, instruction: str) -> list[str]:
        return [rest for ins, rest in self.instructions if ins == instruction]


def dockerfile_stages(path: Path = DOCKERFILE) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) of a Dockerfile; continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")))
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        instruction, _, rest = line.strip().partition(" ")
        instruction, rest = instruction.upper(), " ".join(rest.split())
        if instruction == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages and instruction == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        elif stages:
            stages[-1].instructions.append((instruction, rest))
    return args, stages


def dockerfile_env(stage: Stage) -> dict[str, str]:
    """ENV key=value pairs of a stage (the `ENV a=1 b=2` form)."""
    env: dict[str, str] = {}
    for rest in stage.all("ENV"):
        for token in shlex.split(rest):
            key, _, value = token.partition("=")
            env[key] = re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), os.environ.get(m.group(1), "")), value)
    return env


def dockerignore_excludes(relpath: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `relpath` out of the build context (last matching pattern wins; a
    pattern that matches a parent directory matches everything under it)."""
    excluded = False
    parts = relpath.split("/")
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        regex = re.compile(
            "^" + "".join(
                ".*" if tok == "**" else "[^/]*" if tok == "*" else "[^/]" if tok == "?" else re.escape(tok)
                for tok in re.split(r"(\*\*|\*|\?)", pattern.strip("/"))
            ).replace(".*/", "(.*/)?") + "$")  # `**/x` also matches a top-level x
        if any(regex.match("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def dockerignore_patterns(path: Path = ROOT / ".dockerignore") -> list[str]:
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


# ---- a rendered container as a local process ------------------------------------------------


@dataclass
class LocalContainer:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    mounts: dict[str, Path]  # container mountPath -> local directory


def local_container(pod: dict, container: dict, root: Path, *, configmaps: dict[str, dict[str, str]],
                    secrets: dict[str, dict[str, str]], image_env: dict[str, str], workdir: str,
                    path: str) -> LocalContainer:
    """What the kubelet would run, moved under `root`: volumes become directories (ConfigMap keys
    written as files), paths under a mountPath are rewritten to the directory, env comes from the
    literal values, secretKeyRef/configMapKeyRef and envFrom, command + args get $(VAR) expansion."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        local = root / "volumes" / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            for key, value in configmaps[volume["configMap"]["name"]].items():
                (local / key).write_text(value)
        elif "emptyDir" not in volume and "persistentVolumeClaim" not in volume:
            raise AssertionError(f"no local stand-in for volume {volume}")
        mounts[mount["mountPath"]] = local

    def relocate(value: str) -> str:
        for mount_path, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                return str(local) + value[len(mount_path.rstrip("/")):]
        return value

    env: dict[str, str] = {key: relocate(value) for key, value in image_env.items()}
    env["PATH"] = path
    env["HOME"] = str(root / "home")
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            env.update(secrets[source["secretRef"]["name"]])
        else:
            env.update(configmaps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = relocate(_expand(item["value"], env))
            continue
        ref = item["valueFrom"]
        kind = "secretKeyRef" if "secretKeyRef" in ref else "configMapKeyRef"
        store = secrets if kind == "secretKeyRef" else configmaps
        selector = ref[kind]
        data = store.get(selector["name"], {})
        if selector["key"] not in data:
            if selector.get("optional"):
                continue
            raise AssertionError(f"{item['name']}: {kind} {selector['name']}/{selector['key']} does not exist")
        env[item["name"]] = data[selector["key"]]
    argv = [_expand(a, env) for a in container.get("command", []) + container.get("args", [])]
    cwd = Path(relocate(workdir))
    cwd.mkdir(parents=True, exist_ok=True)
    return LocalContainer(argv, env, cwd, mounts)


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion ($$ escapes; unknown references stay as they are)."""
    return re.sub(r"\$\$|\$\((\w+)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)

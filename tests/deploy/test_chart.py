"""The Helm chart (deploy/helm/bud-runtime/), rendered offline with Helm's own library (PyPI
helm-python-sdk: `helm template` without a helm binary or a cluster) for the default values and
the documented value sets (ci/*-values.yaml), every manifest validated against the Kubernetes
schemas (PyPI kubernetes-validate, strict: unknown fields refused) and the custom resources
against schemas written from their CRDs' documentation (crd_schemas.py); then what the
manifests mean is checked against the services: every container's environment names only real
settings, each address dialled is a Service selecting pods that listen there, migrations run in
a hook Job before the rollout, GPUs follow the parallel sizes, only gateways and the app reach
engines, only the app and the Job may reach the database, mutual TLS by identity."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from app.services.engine_announce import host_in_certificate
from tests.deploy.crd_schemas import SCHEMAS
from tests.deploy.services import COMPONENTS, address_setting, host, known_settings, port, service_settings

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "deploy" / "helm" / "bud-runtime"
VALUE_SETS = {
    "default": None,
    **{p.name.removesuffix("-values.yaml"): p for p in sorted(CHART_DIR.glob("ci/*-values.yaml"))},
}
RELEASE, NAMESPACE = "bud-runtime", "ml"
KUBERNETES_VERSION = (
    "1.30.0"  # the chart's kubeVersion is >=1.27; 1.30 is the oldest still supported upstream
)


def _values(name: str) -> dict[str, Any]:
    path = VALUE_SETS[name]
    return yaml.safe_load(path.read_text()) if path else {}


def render(values: dict[str, Any], *, upgrade: bool = False) -> list[dict[str, Any]]:
    chart = helm_python.Chart.load(CHART_DIR)
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=not upgrade, is_upgrade=upgrade)
    return [
        doc for path, text in out.items() if path.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc
    ]


RENDERED = {name: render(_values(name)) for name in VALUE_SETS}
ALL = [(name, doc) for name, docs in RENDERED.items() for doc in docs]


def _id(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[0]}:{item[1]['kind']}/{item[1]['metadata']['name']}"


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in kinds(docs, kind) if d["metadata"]["name"] == name]
    return found


def workloads(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from (d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job"))


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for workload in workloads(docs):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            yield workload, container


def bud_containers(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any], list[str]]]:
    """Containers running `budrt serve` (args: the components), with their workload."""
    for workload, container in containers(docs):
        if not container.get("command") and container.get("args"):
            yield workload, container, list(container["args"])


def secret_values(docs: list[dict[str, Any]]) -> dict[str, str]:
    secrets = [d for d in kinds(docs, "Secret") if d["metadata"]["name"].endswith("-secrets")]
    if not secrets:  # an existing Secret: stand-in values of the documented keys
        return {
            k: f"x-{k}" for k in ("key-hash-secret", "jwt-secret", "prompt-secrets-key", "admin-password")
        } | {
            "database-url": "postgresql+psycopg://bud:pw@db:5432/bud",
            "redis-url": "redis://:pw@redis:6379/0",
            "metrics-token": "t" * 32,
        }
    return {k: base64.b64decode(v).decode() for k, v in secrets[0]["data"].items()}


_CONFIG_DIR = Path(tempfile.mkdtemp(prefix="bud-chart-config-"))


def _config_file(docs: list[dict[str, Any]]) -> str:
    """The rendered ConfigMap's bud.yaml, as a file here (the pods mount it at BUD_CONFIG)."""
    text = kinds(docs, "ConfigMap")[0]["data"]["bud.yaml"]
    path = _CONFIG_DIR / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    path.write_text(text)
    return str(path)


def _pod_name(container: dict[str, Any], docs: list[dict[str, Any]]) -> str:
    """The name of a pod running `container`: a StatefulSet's ordinal 1 (not 0: the one the app
    is configured with), a Deployment's with a stand-in suffix."""
    for workload, candidate in containers(docs):
        if candidate is container:
            suffix = "1" if workload["kind"] == "StatefulSet" else "7c9d-x2x"
            return f"{workload['metadata']['name']}-{suffix}"
    raise AssertionError("a container of no workload")


def env_of(container: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
    """The container's environment as its process sees it: secret references resolved from the
    rendered Secret, the settings file (BUD_CONFIG) from the rendered ConfigMap, the downward
    API's pod name, and `$(VAR)` references expanded as the kubelet does."""
    secrets = secret_values(docs)
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if item["name"] == "BUD_CONFIG":
            assert item["value"] == "/etc/bud/config/bud.yaml"
            env["BUD_CONFIG"] = _config_file(docs)
        elif "valueFrom" in item and "fieldRef" in item["valueFrom"]:
            assert item["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            env[item["name"]] = _pod_name(container, docs)
        elif "valueFrom" in item:
            key = item["valueFrom"]["secretKeyRef"]["key"]
            assert key in secrets, f"{container['name']}: {item['name']} reads the missing key {key}"
            env[item["name"]] = secrets[key]
        else:
            # Only variables defined above are expanded (the kubelet leaves others as written).
            env[item["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), str(item["value"])
            )
    return env


# ---- schemas ---------------------------------------------------------------------------------


def test_the_documented_value_sets_render() -> None:
    assert {"default", "cpu-small", "gpu-autoscaling", "ray-multinode"} <= set(VALUE_SETS)
    for name, docs in RENDERED.items():
        assert kinds(docs, "Deployment") and kinds(docs, "StatefulSet"), name


@pytest.mark.parametrize("item", ALL, ids=_id)
def test_every_manifest_matches_its_schema(item: tuple[str, dict[str, Any]]) -> None:
    _, doc = item
    crd = SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if crd is not None:
        jsonschema.validate(doc, crd)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validation_can_fail() -> None:
    (deployment, *_) = kinds(RENDERED["default"], "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    (cert, *_) = kinds(RENDERED["default"], "Certificate")
    bad_cert = {**cert, "spec": {**cert["spec"], "usage": ["server auth"]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad_cert, SCHEMAS[("cert-manager.io/v1", "Certificate")])


def test_every_kind_rendered_has_a_schema() -> None:
    for _, doc in ALL:
        if (doc["apiVersion"], doc["kind"]) not in SCHEMAS:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION)  # SchemaNotFoundError otherwise


def test_helm_lint_is_clean() -> None:
    for name in VALUE_SETS:
        report = helm_python.lint(
            CHART_DIR, _values(name), strict=True, kube_version=f"v{KUBERNETES_VERSION}"
        )
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], (name, problems, report["errors"])


def test_required_values_fail_with_a_message() -> None:
    with pytest.raises(
        helm_python.HelmError, match=r"tls.existingSecrets.\w+ is required without cert-manager"
    ):
        render({"tls": {"certManager": {"enabled": False}}})
    bad = _values("ray-multinode")
    bad["engines"][0]["keda"]["enabled"] = True
    with pytest.raises(helm_python.HelmError, match="ray and keda together"):
        render(bad)


# ---- the services' settings and addresses ------------------------------------------------------


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_variable_is_a_real_setting_and_set_once(name: str) -> None:
    docs = RENDERED[name]
    for workload, container, components in bud_containers(docs):
        names = [item["name"] for item in container.get("env", [])]
        assert len(names) == len(set(names)), f"{workload['metadata']['name']}: duplicate variables"
        assert set(components) <= set(COMPONENTS)
        service_settings(components, env_of(container, docs))  # unknown or invalid: raises
    # The shared BUD_CONFIG file (read through it above): only keys some component knows.
    config = yaml.safe_load(kinds(docs, "ConfigMap")[0]["data"]["bud.yaml"])
    assert set(config) <= known_settings()
    (job,) = kinds(docs, "Job")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["budrt", "migrate"]
    service_settings(["app"], env_of(migrate, docs))


def _listeners(docs: list[dict[str, Any]]) -> dict[str, list[tuple[dict[str, Any], int]]]:
    """component → [(pod template labels, port it listens on)]."""
    found: dict[str, list[tuple[dict[str, Any], int]]] = {}
    for workload, container, components in bud_containers(docs):
        settings = service_settings(components, env_of(container, docs))
        labels = workload["spec"]["template"]["metadata"]["labels"]
        declared = {p["containerPort"] for p in container.get("ports", [])}
        for component in components:
            if not COMPONENTS[component].address_setting:
                continue
            bound = getattr(settings[component], COMPONENTS[component].address_setting)
            assert host(bound) == "0.0.0.0", f"{component} listens on {bound}"
            assert port(bound) in declared, f"{component}'s port {port(bound)} is not a containerPort"
            found.setdefault(component, []).append((labels, port(bound)))
    return found


def _service_reaches(
    docs: list[dict[str, Any]], address: str, listeners: list[tuple[dict[str, Any], int]]
) -> bool:
    """Whether `address` (service:port, or pod.service:port) is a Service whose selector picks
    pods that listen on that port."""
    name, target_port = host(address), port(address)
    pod = ""
    if "." in name:
        pod, name = name.split(".", 1)
    services = [s for s in kinds(docs, "Service") if s["metadata"]["name"] == name]
    if not services:
        return False
    service = services[0]
    selector = service["spec"]["selector"]
    ports = {p["port"]: p.get("targetPort") for p in service["spec"]["ports"]}
    if target_port not in ports:
        return False
    if pod:  # a StatefulSet pod: <statefulset>-<ordinal> governed by this Service
        assert service["spec"].get("clusterIP") == "None"
        sets = [s for s in kinds(docs, "StatefulSet") if pod.rsplit("-", 1)[0] == s["metadata"]["name"]]
        if not sets or sets[0]["spec"]["serviceName"] != name:
            return False
    return any(
        all(labels.get(k) == v for k, v in selector.items()) and listen == target_port
        for labels, listen in listeners
    )


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_addresses_line_up(name: str) -> None:
    docs = RENDERED[name]
    listeners = _listeners(docs)
    assert {"app", "gateway", "engine"} <= set(listeners)
    for workload, container, components in bud_containers(docs):
        settings = service_settings(components, env_of(container, docs))
        for component, model in settings.items():
            for target in ("app", "engine", "prompt"):
                if target in components or COMPONENTS[component].hosted_by:
                    continue
                dialled = getattr(model, address_setting(target))
                assert _service_reaches(docs, dialled, listeners.get(target, [])), (
                    f"{name}: {workload['metadata']['name']}/{component} dials {target} at {dialled}: no Service "
                    "selects pods listening there"
                )


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_secrets_shared_and_migrations_before_the_rollout(name: str) -> None:
    docs = RENDERED[name]
    shared = {
        tuple(env_of(c, docs)[k] for k in ("BUD_KEY_HASH_SECRET", "BUD_JWT_SECRET"))
        for _, c, _ in bud_containers(docs)
    }
    assert len(shared) == 1  # every process the same key-hash and JWT secrets
    (job,) = kinds(docs, "Job")
    hooks = job["metadata"]["annotations"]
    assert set(hooks["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    secret = [s for s in kinds(docs, "Secret") if s["metadata"]["name"].endswith("-secrets")]
    if secret:  # the chart's Secret exists before the Job that reads it
        annotations = secret[0]["metadata"]["annotations"]
        assert "pre-install" in annotations["helm.sh/hook"]
        assert int(annotations["helm.sh/hook-weight"]) < int(hooks["helm.sh/hook-weight"])
    for workload, container, components in bud_containers(docs):
        if "app" in components:
            settings = service_settings(components, env_of(container, docs))
            assert settings["app"].migrate_on_start is False
            assert workload["spec"]["replicas"] == 1 and workload["spec"]["strategy"]["type"] == "Recreate"


def test_generated_secrets_are_random_and_given_ones_win() -> None:
    first, second = (secret_values(render({})) for _ in range(2))
    assert first["jwt-secret"] != second["jwt-secret"] and len(first["jwt-secret"]) >= 32
    given = secret_values(render({"secrets": {"jwtSecret": "mine"}, "database": {"password": "p@ss"}}))
    assert given["jwt-secret"] == "mine"
    assert given["database-url"] == "postgresql+psycopg://bud:p@ss@postgresql:5432/bud"


# ---- probes, resources, security -------------------------------------------------------------


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_probes_ask_the_health_endpoints(name: str) -> None:
    for _workload, container, components in bud_containers(RENDERED[name]):
        ready = container["readinessProbe"]
        if components[0] == "gateway":
            assert (
                ready["httpGet"]["path"] == "/readyz"
                and container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            )
        else:
            assert ready["exec"]["command"] == ["bud-healthcheck", components[0]]
        assert "livenessProbe" in container


def _engine_sets(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in kinds(docs, "StatefulSet") if not s["metadata"]["name"].endswith("-ray-worker")]


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_engines_get_gpus_for_their_parallel_sizes(name: str) -> None:
    docs, values = RENDERED[name], _values(name)
    groups = values.get("engines") or yaml.safe_load((CHART_DIR / "values.yaml").read_text())["engines"]
    for group, sts in zip(groups, _engine_sets(docs), strict=True):
        spec = sts["spec"]["template"]["spec"]
        engine = next(c for c in spec["containers"] if c["name"] == "engine")
        gpus = engine["resources"].get("limits", {}).get("nvidia.com/gpu")
        if group["accelerator"] == "cpu":
            assert gpus is None and "engine-cpu" in engine["image"]
        elif group["ray"]["enabled"]:
            head = next(c for c in spec["containers"] if c["name"] == "ray-head")
            worker = named(docs, "StatefulSet", f"{sts['metadata']['name']}-ray-worker")
            per_pod = group["ray"]["gpusPerPod"]
            total = per_pod * (1 + worker["spec"]["replicas"])
            assert head["resources"]["limits"]["nvidia.com/gpu"] == per_pod
            assert total >= group["tensorParallelSize"] * group["pipelineParallelSize"]
            assert env_of(engine, docs)["RAY_ADDRESS"] == "127.0.0.1:6379"
        else:
            assert gpus == group["tensorParallelSize"] * group["pipelineParallelSize"]
            assert "engine-gpu" in engine["image"]
        if group.get("tolerations"):
            assert spec["tolerations"] == group["tolerations"]
        claims = [v for v in spec["volumes"] if v["name"] == "models"] or sts["spec"]["volumeClaimTemplates"]
        assert claims


def test_keda_scales_the_group_to_zero_on_its_queue() -> None:
    docs = RENDERED["gpu-autoscaling"]
    (scaled,) = kinds(docs, "ScaledObject")
    assert scaled["spec"]["minReplicaCount"] == 0
    assert scaled["spec"]["scaleTargetRef"]["name"] == _engine_sets(docs)[0]["metadata"]["name"]
    assert "replicas" not in _engine_sets(docs)[0]["spec"]  # KEDA owns the count
    (hpa,) = kinds(docs, "HorizontalPodAutoscaler")
    assert {m["type"] for m in hpa["spec"]["metrics"]} == {"Resource", "Pods"}


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_containers_run_unprivileged_from_pinned_images(name: str) -> None:
    docs = RENDERED[name]
    for workload, container in containers(docs):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        image = container["image"]
        assert ":" in image and not image.endswith(":latest")
        assert pod.get("automountServiceAccountToken") is False


# ---- mutual TLS and network policies ---------------------------------------------------------


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_each_process_holds_its_identitys_certificate(name: str) -> None:
    docs = RENDERED[name]
    certificates = {c["spec"]["secretName"]: c for c in kinds(docs, "Certificate")}
    for workload, container, components in bud_containers(docs):
        pod = workload["spec"]["template"]["spec"]
        (tls,) = [v for v in pod["volumes"] if v["name"] == "tls"]
        secret = tls["secret"]["secretName"]
        assert secret.endswith(components[0]), f"{components[0]} mounts {secret}"
        env = env_of(container, docs)
        assert env["BUD_TLS_CERT_FILE"].startswith("/etc/bud/tls/")
        if certificates:
            cert = certificates[secret]["spec"]
            assert cert["uris"] == [f"spiffe://bud/{components[0]}"]
            assert env["BUD_TLS_SERVER_NAME"] in cert["dnsNames"] and "127.0.0.1" in cert["ipAddresses"]


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_engine_pods_announce_their_own_name_which_their_certificate_covers(name: str) -> None:
    """Each engine pod announces <pod>.<headless service>:<port> (the app accepts it only when
    the engine certificate names that host), an address that reaches that very pod; the app
    admits the engines on its port; the notes no longer ask for registration by hand."""
    docs = RENDERED[name]
    certificates = {c["spec"]["secretName"]: c["spec"] for c in kinds(docs, "Certificate")}
    listeners = _listeners(docs)
    sets = _engine_sets(docs)
    assert sets
    for sts in sets:
        pod = sts["spec"]["template"]["spec"]
        engine = next(c for c in pod["containers"] if c["name"] == "engine")
        settings = service_settings(["engine"], env_of(engine, docs))["engine"]
        announced = settings.announce_address
        pod_name = f"{sts['metadata']['name']}-1"
        assert announced == f"{pod_name}.{sts['spec']['serviceName']}:{port(settings.engine_address)}"
        assert _service_reaches(docs, announced, listeners["engine"])
        assert settings.announce_interval_seconds * 3 <= float(
            env_of(_app_container(docs), docs)["BUD_ENGINE_LEASE_SECONDS"]
        )
        (tls,) = [v for v in pod["volumes"] if v["name"] == "tls"]
        cert = certificates.get(tls["secret"]["secretName"])
        if cert is None:  # existing Secrets: documented (values.yaml engineAnnounce)
            continue
        ips = [ipaddress.ip_address(i) for i in cert.get("ipAddresses", [])]
        fqdn = f"{pod_name}.{sts['spec']['serviceName']}.{NAMESPACE}.svc.cluster.local"
        assert host_in_certificate(host(announced), cert["dnsNames"], ips)
        assert host_in_certificate(fqdn, cert["dnsNames"], ips)
        # Not a name outside the engines' Services (the app's, another release's).
        assert not host_in_certificate(f"{RELEASE}-app.{NAMESPACE}.svc", cert["dnsNames"], ips)
    app_labels = kinds(docs, "Deployment")
    app_pod = next(d for d in app_labels if d["metadata"]["name"].endswith("-app"))["spec"]["template"]
    rules = [
        r
        for p in _policies(docs)
        if _selects(p, app_pod["metadata"]["labels"])
        for r in p["spec"].get("ingress", [])
    ]
    engine_peers = [
        peer
        for rule in rules
        for peer in rule.get("from", [])
        if peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "engine"
    ]
    if kinds(docs, "NetworkPolicy"):
        assert engine_peers, "the engines cannot reach the app to announce themselves"
    notes = _notes(_values(name))
    assert "POST $URL/v1/engines" not in notes and "registers itself" in notes


def test_without_announcing_the_notes_say_how_to_register() -> None:
    values = {"engineAnnounce": {"enabled": False, "intervalSeconds": 30, "leaseSeconds": 90}}
    docs = render(values)
    for sts in _engine_sets(docs):
        engine = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "engine")
        assert not service_settings(["engine"], env_of(engine, docs))["engine"].announce_address
    assert "POST $URL/v1/engines" in _notes(values)


def _app_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(c for w, c, components in bud_containers(docs) if components[0] == "app")


def _notes(values: dict[str, Any]) -> str:
    chart = helm_python.Chart.load(CHART_DIR)
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True, is_upgrade=False)
    (notes,) = [text for path, text in out.items() if path.endswith("NOTES.txt")]
    return str(notes)


def _policies(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return kinds(docs, "NetworkPolicy")


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_only_gateways_and_the_app_reach_engines(name: str) -> None:
    docs = RENDERED[name]
    engine_labels = _engine_sets(docs)[0]["spec"]["template"]["metadata"]["labels"]
    rules = [r for p in _policies(docs) if _selects(p, engine_labels) for r in p["spec"].get("ingress", [])]
    engine_port = 50071
    admitted = set()
    for rule in rules:
        if engine_port in {p["port"] for p in rule.get("ports", [])} or not rule.get("ports"):
            for peer in rule.get("from", [{}]):
                labels = peer.get("podSelector", {}).get("matchLabels", {})
                admitted.add(
                    labels.get("app.kubernetes.io/component") or labels.get("bud.ai/engine-group") or "ANY"
                )
    assert "ANY" not in admitted and {"gateway", "app"} <= admitted
    assert admitted - {"gateway", "app"} <= {g["name"] for g in (_values(name).get("engines") or [])}


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_only_the_app_and_the_migration_reach_the_database(name: str) -> None:
    docs = RENDERED[name]
    db_port = 5432
    for workload in workloads(docs):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        component = labels["app.kubernetes.io/component"]
        egress = [p for p in _policies(docs) if _selects(p, labels) and "Egress" in p["spec"]["policyTypes"]]
        assert egress, f"{workload['metadata']['name']}: no egress policy"
        open_ports = {
            p["port"] for pol in egress for r in pol["spec"].get("egress", []) for p in r.get("ports", [])
        }
        reaches = db_port in open_ports
        assert reaches == (component in ("app", "migrate")), f"{component} reaches the database: {reaches}"

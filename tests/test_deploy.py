"""The deployment files: the Kubernetes manifests are valid for the Kubernetes API and wired
to each other and to the app (Secret and ConfigMap names and keys, the Service's selector,
one beat, probes on paths the app answers), and compose never starts on a published key."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import flower.urls
import kubernetes_validate
import pytest
import yaml
from django.test import Client
from django.urls import Resolver404, resolve
from kubernetes_validate.utils import SchemaNotFoundError

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.37"
# KEDA's kinds: the Kubernetes schemas do not include custom resources.
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication"}
SECRET_SETTINGS = {
    "SECRET_KEY",
    "FERNET_KEYS",
    "DATABASE_URL",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "METRICS_TOKEN",
}


def manifests() -> list[dict]:
    """Every object in deploy/kubernetes/ (the kustomization is kubectl's, not the cluster's)."""
    objects = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def of_kind(kind: str) -> list[dict]:
    return [obj for obj in manifests() if obj["kind"] == kind]


def named(kind: str, name: str) -> dict:
    [obj] = [obj for obj in of_kind(kind) if obj["metadata"]["name"] == name]
    return obj


def workloads() -> list[dict]:
    return of_kind("Deployment") + of_kind("Job")


def containers(workload: dict) -> Iterator[dict]:
    pod = workload["spec"]["template"]["spec"]
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def secret_keys() -> dict[str, set[str]]:
    return {
        secret["metadata"]["name"]: set(secret.get("stringData", {}) | secret.get("data", {}))
        for secret in of_kind("Secret")
    }


def test_every_manifest_is_valid_for_the_kubernetes_api():
    checked = set()
    for obj in manifests():
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except SchemaNotFoundError:
            assert obj["kind"] in CUSTOM_KINDS, f"no schema for {obj['kind']}"
            continue
        checked.add(obj["kind"])
    assert {"Deployment", "Service", "Job", "ConfigMap", "Secret", "Namespace"} <= checked


def test_a_cluster_gets_web_workers_one_beat_flower_and_the_migration():
    deployments = {d["metadata"]["name"] for d in of_kind("Deployment")}
    assert {"beamclaw-web", "beamclaw-beat", "beamclaw-flower"} <= deployments
    assert any(name.startswith("beamclaw-worker-") for name in deployments)
    [job] = of_kind("Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-2:] == [
        "migrate",
        "--noinput",
    ]


def test_kustomize_applies_every_manifest_but_the_secret_and_the_autoscalers():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    for name in listed:
        assert (KUBERNETES / name).exists(), name
    # The Secret is made by hand (a re-apply must not blank it); KEDA and the HPA are
    # alternatives for the workers.
    optional = {"secret.yaml", "keda-scaledobject.yaml", "hpa-external-metric.yaml"}
    on_disk = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - optional


def test_every_secret_and_setting_a_pod_reads_exists():
    secrets = secret_keys()
    config_maps = {cm["metadata"]["name"]: set(cm["data"]) for cm in of_kind("ConfigMap")}
    for workload in workloads():
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, where
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, where
            for variable in container.get("env", []):
                if ref := variable.get("valueFrom", {}).get("secretKeyRef"):
                    assert ref["key"] in secrets.get(ref["name"], set()), (where, ref)
                # A secret never sits in a manifest as a plain value.
                assert variable["name"] not in SECRET_SETTINGS or "valueFrom" in variable
    for auth in of_kind("TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in secrets.get(ref["name"], set()), ref


def test_secrets_live_in_the_secret_empty_and_the_rest_in_the_config_map():
    secret = named("Secret", "beamclaw-secrets")
    assert set(secret["stringData"]) == SECRET_SETTINGS
    assert all(value == "" for value in secret["stringData"].values())  # nothing published
    config = named("ConfigMap", "beamclaw-config")["data"]
    assert not SECRET_SETTINGS & set(config)
    assert config["DEBUG"] == "0"


def test_the_web_service_selects_the_web_pods_only():
    service = named("Service", "beamclaw-web")
    selector = service["spec"]["selector"]
    web = named("Deployment", "beamclaw-web")
    labels = web["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    for other in of_kind("Deployment"):
        if other is not web and other["metadata"]["name"] != "beamclaw-web":
            assert not selector.items() <= other["spec"]["template"]["metadata"]["labels"].items()
    port_names = {p["name"] for p in web["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_exactly_one_beat_runs_even_during_a_rollout():
    beats = [
        d
        for d in of_kind("Deployment")
        if "beat" in d["spec"]["template"]["spec"]["containers"][0]["command"]
    ]
    assert len(beats) == 1
    assert beats[0]["spec"]["replicas"] == 1
    assert beats[0]["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.django_db
def test_the_web_probes_ask_paths_the_app_answers_with_the_host_it_allows(settings):
    web = named("Deployment", "beamclaw-web")["spec"]["template"]["spec"]["containers"][0]
    readiness, liveness = web["readinessProbe"]["httpGet"], web["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz"  # ready only when the database, Redis, broker answer
    assert liveness["path"] == "/healthz"
    allowed = named("ConfigMap", "beamclaw-config")["data"]["ALLOWED_HOSTS"].split(",")
    settings.ALLOWED_HOSTS = allowed
    for probe in (readiness, liveness):
        host = {h["name"]: h["value"] for h in probe["httpHeaders"]}["Host"]
        response = Client().get(probe["path"], HTTP_HOST=host)
        assert response.status_code == 200, (probe["path"], response.content)


def test_flower_is_probed_on_its_health_check():
    [flower_pod] = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "beamclaw-flower"]
    probe = flower_pod["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    path = probe["httpGet"]["path"]
    # Flower's routes are tornado URLSpecs or (pattern, handler) tuples.
    patterns = [
        getattr(route, "regex", None) or re.compile(route[0]) for route in flower.urls.handlers
    ]
    assert any(pattern.fullmatch(path) for pattern in patterns), path


def test_the_autoscalers_scale_a_worker_deployment_from_a_path_the_web_serves():
    deployments = {d["metadata"]["name"] for d in of_kind("Deployment")}
    for scaler in of_kind("ScaledObject") + of_kind("HorizontalPodAutoscaler"):
        assert scaler["spec"]["scaleTargetRef"]["name"] in deployments
    for scaler in of_kind("ScaledObject"):
        for trigger in scaler["spec"]["triggers"]:
            url = re.match(r"https?://([^:/]+)(?::\d+)?(/.*)", trigger["metadata"]["url"])
            assert url[1].split(".")[0] in {s["metadata"]["name"] for s in of_kind("Service")}
            try:
                resolve(url[2])
            except Resolver404:
                pytest.fail(f"{url[2]} is not a path of the app")


def test_compose_refuses_to_start_without_a_secret_key_and_fernet_keys():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    app_services = [
        service
        for service in compose["services"].values()
        if "SECRET_KEY" in service.get("environment", {})
    ]
    assert {"web", "worker", "beat", "flower", "migrate"} <= {
        name for name, service in compose["services"].items() if service in app_services
    }
    for service in app_services:
        for name in ("SECRET_KEY", "FERNET_KEYS"):
            # ${NAME:?message}: compose stops with the message when it is unset or empty.
            assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", service["environment"][name])


def test_every_shard_below_worker_shards_has_a_worker_deployment_consuming_it():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    applied = [
        doc
        for name in kustomization["resources"]
        for doc in yaml.safe_load_all((KUBERNETES / name).read_text())
        if doc
    ]
    [config] = [doc for doc in applied if doc["kind"] == "ConfigMap"]
    shards = int(config["data"]["WORKER_SHARDS"])
    consumed = set()
    for deployment in (doc for doc in applied if doc["kind"] == "Deployment"):
        for container in containers(deployment):
            command = [str(part) for part in container.get("command", [])]
            if "--shard" in command:
                consumed.add(command[command.index("--shard") + 1])

    assert consumed == {f"{shard}/{shards}" for shard in range(shards)}

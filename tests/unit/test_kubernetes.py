"""deploy/kubernetes/: every manifest valid against the Kubernetes API schemas (kubernetes-validate ships
them: offline), every OMS_* variable it sets a setting of the worker with a value that parses, and the
pod wired as the README says (instance id from the pod name, volumes where the worker writes, probes,
grace period, secrets from Secrets)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from workers.config.rules_file import load_rules
from workers.config.settings import Settings
from workers.kafka.web import exposure_problem

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "deploy" / "kubernetes"
KUBERNETES = "1.37.0"
POD = "oms-postsales-0"


def manifests() -> dict[Path, list[dict[str, Any]]]:
    return {
        path: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in sorted(FOLDER.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def resources() -> list[dict[str, Any]]:
    return [doc for docs in manifests().values() for doc in docs]


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    [found] = [r for r in resources() if r["kind"] == kind and name in (None, r["metadata"]["name"])]
    return found


def container() -> dict[str, Any]:
    [worker] = one("StatefulSet")["spec"]["template"]["spec"]["containers"]
    return worker


def unknown_settings(variables: list[str]) -> list[str]:
    """The OMS_* names that are no setting of the worker (OMS_X__Y: the nested setting x)."""
    fields = set(Settings.model_fields)
    return [
        v
        for v in variables
        if v.startswith("OMS_") and v.removeprefix("OMS_").lower().split("__")[0] not in fields
    ]


def pod_environment() -> dict[str, str]:
    """The OMS_* environment of pod 0: the ConfigMap, then the container's own variables, secrets read
    from the Secret's (placeholder) values and the downward API's pod name."""
    env: dict[str, str] = {}
    worker = container()
    for source in worker.get("envFrom", []):
        env.update(one("ConfigMap", source["configMapRef"]["name"])["data"])
    for variable in worker.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        source = variable["valueFrom"]
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.name"
            env[variable["name"]] = POD
        else:
            ref = source["secretKeyRef"]
            env[variable["name"]] = one("Secret", ref["name"])["stringData"][ref["key"]]
    return env


@pytest.mark.parametrize("path", sorted(manifests()), ids=lambda p: p.name)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(path: Path) -> None:
    for doc in manifests()[path]:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_validation_would_refuse_a_wrong_manifest() -> None:
    statefulset = one("StatefulSet")
    statefulset["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES, strict=True)
    statefulset["spec"]["replicas"] = 3
    statefulset["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((FOLDER / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifests())


def test_every_variable_is_a_setting_and_the_pod_environment_parses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = pod_environment()
    assert unknown_settings(sorted(env)) == []
    for key in list(os.environ):
        if key.upper().startswith("OMS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The Secret's placeholder token is refused at start, so an unfilled Secret cannot go live.
    with pytest.raises(ValueError, match="api_token"):
        Settings()
    monkeypatch.setenv("OMS_API_TOKEN", "0123456789abcdef0123456789abcdef")  # what the operator puts there
    settings = Settings()  # read from the environment, as in the pod
    assert settings.group_instance_id == POD and settings.session_timeout_seconds == 45
    assert settings.security_protocol == "SASL_SSL" and settings.sasl_password is not None
    # The worker listens beyond loopback there, so it must have a token.
    assert settings.web_host == "0.0.0.0" and exposure_problem(settings) is None
    assert settings.store == "rocksdb://"
    # Every Kafka setting must parse; the TLS files only exist in the pod.
    assert settings.partitions >= one("StatefulSet")["spec"]["replicas"]


def test_a_misspelt_variable_is_caught() -> None:
    assert unknown_settings(["OMS_SESSION_TIMEOUT_SECONDS", "OMS_SESION_TIMEOUT", "OMS_TOPIC_MAP__x"]) == [
        "OMS_SESION_TIMEOUT"
    ]


def test_the_pod_writes_only_to_its_volumes_and_reads_rules_and_tls_from_mounts(tmp_path: Path) -> None:
    spec = one("StatefulSet")["spec"]
    pod = spec["template"]["spec"]
    worker = container()
    env = pod_environment()
    mounts = {m["mountPath"]: m for m in worker["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
    # Read-only root: the data folder is the pod's own claim, /tmp an emptyDir.
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    assert mounts[env["OMS_DATA_DIR"]]["name"] in claims
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert all(m.get("readOnly") for path, m in mounts.items() if path not in (env["OMS_DATA_DIR"], "/tmp"))
    # The rules file and the CA are files of the mounted ConfigMap and Secret.
    rules = Path(env["OMS_RULES_FILE"])
    rules_map = one("ConfigMap", volumes[mounts[str(rules.parent)]["name"]]["configMap"]["name"])
    (tmp_path / rules.name).write_text(rules_map["data"][rules.name])
    load_rules(tmp_path / rules.name)
    ca = Path(env["OMS_SSL_CAFILE"])
    tls = one("Secret", volumes[mounts[str(ca.parent)]["name"]]["secret"]["secretName"])
    assert ca.name in tls["stringData"]


def test_the_pod_is_a_static_member_with_probes_grace_and_a_locked_down_container() -> None:
    statefulset = one("StatefulSet")
    spec = statefulset["spec"]
    pod = spec["template"]["spec"]
    worker = container()
    env = pod_environment()
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == one("Service")["metadata"]["name"]
    assert one("Service")["spec"]["clusterIP"] == "None"
    port = int(env["OMS_WEB_PORT"])
    assert [p["containerPort"] for p in worker["ports"]] == [port]
    assert worker["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert worker["livenessProbe"]["httpGet"]["path"] == "/health"
    # The worker's own stop bound plus a margin, so that it exits before the kubelet's SIGKILL.
    assert pod["terminationGracePeriodSeconds"] >= float(env["OMS_SHUTDOWN_TIMEOUT_SECONDS"]) + 10
    context = worker["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert worker["resources"]["limits"]["memory"] and worker["resources"]["requests"]["memory"]
    # The budget and the service select the StatefulSet's pods.
    labels = spec["template"]["metadata"]["labels"]
    for selector in (
        one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        one("Service")["spec"]["selector"],
    ):
        assert selector.items() <= labels.items()
    assert one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    # No secret in the ConfigMap.
    assert not {"OMS_SASL_PASSWORD", "OMS_API_TOKEN", "OMS_SSL_PASSWORD"} & set(
        one("ConfigMap", "oms-postsales-settings")["data"]
    )

"""The Kubernetes manifests in deploy/k8s validate against Kubernetes' own schemas
(kubernetes-validate, strict: no unknown field), and point at what sipgrid really serves."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def documents() -> list[dict[str, object]]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def test_the_manifests_validate_strictly() -> None:
    found = documents()
    assert {d["kind"] for d in found} >= {
        "ConfigMap",
        "Secret",
        "Deployment",
        "StatefulSet",
        "Service",
    }
    for doc in found:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_the_edgeport_is_a_statefulset_with_udp_and_tcp_services() -> None:
    found = {(d["kind"], d["metadata"]["name"]): d for d in documents()}  # type: ignore[index]
    assert ("StatefulSet", "edgeport") in found
    udp = found[("Service", "edgeport-udp")]["spec"]["ports"]  # type: ignore[index]
    tcp = found[("Service", "edgeport-tcp")]["spec"]["ports"]  # type: ignore[index]
    assert {p["protocol"] for p in udp} == {"UDP"} and {p["protocol"] for p in tcp} == {"TCP"}
    for name in ("apiserver", "location", "connect", "dispatcher"):
        container = found[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
        assert container["args"][:2] == ["serve", name] and "grpc" in container["readinessProbe"]

"""The Kubernetes manifests in deploy/k8s validate against Kubernetes' own schemas
(kubernetes-validate, strict: no unknown field), and point at what sipgrid really serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

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
    for name in ("apiserver", "location", "connect", "dispatcher", "rtprelay"):
        container = found[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
        assert container["args"][:2] == ["serve", name] and "grpc" in container["readinessProbe"]


def test_the_configmap_files_are_sipgrids_and_name_services_that_exist(tmp_path: Path) -> None:
    """The ConfigMap's files load as a start would load them, and every address the
    Dispatcher calls is a Service of the manifests on that port (rtpengine's too)."""
    from sipgrid.services.dispatcher.dispatcher import load_dispatcher
    from sipgrid.services.edgeport.config import load_edgeport

    docs = cast(list[dict[str, Any]], documents())
    found = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    files = found[("ConfigMap", "sipgrid-config")]["data"]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    dispatcher = load_dispatcher(tmp_path / "dispatcher.yaml")
    load_edgeport(tmp_path / "edgeport.yaml")
    ports = {
        (d["metadata"]["name"], p["port"])
        for d in docs
        if d["kind"] == "Service"
        for p in d["spec"]["ports"]
    }
    addresses = [p.addr for p in dispatcher.spec.processors] + [
        m.addr for m in dispatcher.spec.middlewares
    ]
    assert "rtprelay:51903" in addresses
    for addr in addresses:
        host, _, port = addr.rpartition(":")
        assert (host, int(port)) in ports, addr
    relay = found[("Deployment", "rtprelay")]["spec"]["template"]["spec"]["containers"][0]
    engine = {e["name"]: e["value"] for e in relay["env"]}
    assert (engine["RTPENGINE_HOST"], int(engine["RTPENGINE_PORT"])) in ports


def test_each_services_frames_port_is_open_in_its_pod_and_its_service() -> None:
    """A client seeks a server's frames at the host it reached gRPC at (the Service): a
    port the Service does not carry would leave the calls on the slower gRPC stream."""
    docs = cast(list[dict[str, Any]], documents())
    found = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for name in ("location", "connect", "dispatcher", "rtprelay"):
        container = found[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        port = int(env["FRAMES_BIND_ADDR"].rpartition(":")[2])
        assert port in {p["containerPort"] for p in container["ports"]}, name
        assert port in {p["port"] for p in found[("Service", name)]["spec"]["ports"]}, name

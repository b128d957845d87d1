"""The generated stubs import, and their services keep Routr v2beta1's names."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

PROTO_DIR = Path(__file__).resolve().parents[1] / "proto"
MODULES = sorted(p.stem for p in PROTO_DIR.glob("*.proto"))


@pytest.mark.parametrize("name", MODULES)
def test_every_stub_imports(name: str) -> None:
    importlib.import_module(f"sipgrid.pb.{name}_pb2")
    importlib.import_module(f"sipgrid.pb.{name}_pb2_grpc")


@pytest.mark.parametrize(
    ("module", "service", "methods"),
    [
        ("processor", "fonoster.routr.processor.v2beta1.Processor", ["ProcessMessage"]),
        (
            "location",
            "fonoster.routr.location.v2beta1.Location",
            ["AddRoute", "FindRoutes", "RemoveRoutes", "ListRoutes"],
        ),
        ("requester", "fonoster.routr.requester.v2beta1.Requester", ["SendMessage"]),
        ("verifier", "fonoster.verifier.Verifier", ["Verify"]),
        ("acl", "fonoster.routr.connect.acl.v2beta1.ACLService", None),
        ("agents", "fonoster.routr.connect.agents.v2beta1.Agents", None),
        ("credentials", "fonoster.routr.connect.credentials.v2beta1.CredentialsService", None),
        ("domains", "fonoster.routr.connect.domains.v2beta1.Domains", None),
        ("numbers", "fonoster.routr.connect.numbers.v2beta1.Numbers", None),
        ("peers", "fonoster.routr.connect.peers.v2beta1.Peers", None),
        ("trunks", "fonoster.routr.connect.trunks.v2beta1.Trunks", None),
    ],
)
def test_service_names_are_routr_v2beta1(
    module: str, service: str, methods: list[str] | None
) -> None:
    pb2 = importlib.import_module(f"sipgrid.pb.{module}_pb2")
    descriptor = pb2.DESCRIPTOR.services_by_name[service.rsplit(".", 1)[1]]
    assert descriptor.full_name == service
    expected = methods or ["Create", "Update", "Get", "Delete", "List", "FindBy"]
    assert [m.name for m in descriptor.methods] == expected
    paths = {f"/{service}/{m.name}" for m in descriptor.methods}
    grpc_source = Path(
        importlib.import_module(f"sipgrid.pb.{module}_pb2_grpc").__file__ or ""
    ).read_text()
    for path in paths:
        assert f"'{path}'" in grpc_source


def test_field_numbers_match_routr() -> None:
    from sipgrid.pb import location_pb2, processor_pb2, sipmessage_pb2

    request = processor_pb2.MessageRequest.DESCRIPTOR.fields_by_name
    assert {n: f.number for n, f in request.items()} == {
        "ref": 1, "edge_port_ref": 2, "method": 3, "sender": 4, "listening_points": 5,
        "external_addrs": 6, "localnets": 7, "message": 8, "metadata": 9,
    }  # fmt: skip
    route = location_pb2.Route.DESCRIPTOR.fields_by_name
    assert (route["advertised_host"].number, route["labels"].number, route["transport"].number) == (
        13,
        12,
        4,
    )
    sip = sipmessage_pb2.SIPMessage.DESCRIPTOR.fields_by_name
    assert (
        sip["response_type"].number,
        sip["request_uri"].number,
        sip["via"].number,
        sip["body"].number,
    ) == (1, 2, 13, 17)
    # sipgrid's additions stay clear of Routr's numbers
    assert all(sip[n].number >= 100 for n in ("raw", "contacts", "cseq", "status_code", "method"))
    assert processor_pb2.Method.Value("UPDATE") == 14


def test_a_message_round_trips_through_the_wire_format() -> None:
    from sipgrid.pb import processor_pb2

    original = processor_pb2.MessageRequest(
        ref="call-1", edge_port_ref="ep-01", method=processor_pb2.INVITE
    )
    original.sender.host = "127.0.0.1"
    original.sender.port = 5060
    original.message.raw = b"INVITE sip:x SIP/2.0\r\n\r\n"
    original.metadata["k"] = "v"
    decoded = processor_pb2.MessageRequest.FromString(original.SerializeToString())
    assert decoded == original

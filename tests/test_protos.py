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


def test_a_routr_processors_answer_without_raw_bytes_is_rebuilt() -> None:
    """What @routr/processor sends back: the request as it came (perhaps changed), or a
    response made from it (responseType, reasonPhrase, extra headers)."""
    from sipgrid.api.convert import message_from_pb, message_to_pb
    from sipgrid.pb import sipmessage_pb2
    from sipgrid.sip import Request, Response, parse
    from tests.sip.helpers import INVITE

    original = parse(INVITE.replace(b"\r\n\r\n", b"\r\nX-Drop-Me: yes\r\n\r\n", 1))
    assert isinstance(original, Request)
    # res.send(req) after Alterations: a header removed, one added, a new Request-URI
    sent = message_to_pb(original)
    sent.ClearField("raw")
    kept = [e for e in sent.extensions if e.name != "X-Drop-Me"]
    del sent.extensions[:]
    sent.extensions.extend(kept)
    sent.extensions.add(name="X-Added", value="1")
    sent.request_uri.host = "voicemail.example"
    sent.request_uri.port = 5070
    rebuilt = message_from_pb(sent, original)
    assert isinstance(rebuilt, Request)
    assert str(rebuilt.uri).startswith("sip:") and "voicemail.example:5070" in str(rebuilt.uri)
    assert rebuilt.get("X-Drop-Me") is None and rebuilt.get("X-Added") == "1"
    assert rebuilt.call_id == original.call_id and rebuilt.body == original.body
    # an unchanged Request-URI keeps its exact spelling (parameters Routr has no field for)
    same = message_to_pb(original)
    same.ClearField("raw")
    again = message_from_pb(same, original)
    assert isinstance(again, Request) and str(again.uri) == str(original.uri)
    # res.sendOk([...]) / a 401 with a challenge: made from the request
    answer = sipmessage_pb2.SIPMessage(
        response_type=sipmessage_pb2.UNAUTHORIZED, reason_phrase="Unauthorized"
    )
    answer.extensions.add(name="WWW-Authenticate", value='Digest realm="sip.local", nonce="n"')
    response = message_from_pb(answer, original)
    assert isinstance(response, Response) and (response.status, response.reason) == (
        401,
        "Unauthorized",
    )
    assert response.call_id == original.call_id and response.to.tag
    assert response.get("WWW-Authenticate") == 'Digest realm="sip.local", nonce="n"'
    with pytest.raises(ValueError, match="no raw bytes and no message"):
        message_from_pb(answer)
    with pytest.raises(ValueError, match="without a status"):
        message_from_pb(sipmessage_pb2.SIPMessage(response_type=sipmessage_pb2.UNKNOWN), original)

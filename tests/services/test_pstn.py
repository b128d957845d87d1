"""Every routing direction of the Connect processor over the example resources
(config/resources: sip-local.yaml and pstn.yaml), driven with plain messages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from sipgrid.api.types import MessageRequest, NetInterface, Route, Transport
from sipgrid.sip import Challenge, Request, Response
from sipgrid.sip.digest import answer

from .helpers import ROOT
from .test_connect import ALICE, BOB, Switch, authorization, registered
from .test_connect import register as register_text

PROVIDER = NetInterface("127.0.0.1", 5080, Transport.UDP)
MEDIA_1 = NetInterface("127.0.0.1", 7101, Transport.UDP)
MEDIA_2 = NetInterface("127.0.0.1", 7102, Transport.UDP)
ALICE_NUMBER = "17853178070"
VOICE_NUMBER = "17853178071"


def call(
    uri: str,
    caller: str,
    *,
    cseq: int = 1,
    call_id: str = "pstn1",
    headers: str = "",
    port: int = 7001,
) -> str:
    return (
        f"INVITE {uri} SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKp{cseq}{call_id}\n"
        f"From: <{caller}>;tag=caller\nTo: <{uri}>\n"
        f"Call-ID: {call_id}\nCSeq: {cseq} INVITE\nMax-Forwards: 70\n"
        f"Contact: <sip:caller@127.0.0.1:{port}>\n{headers}Content-Length: 0\n\n"
    )


def from_provider(number: str, *, call_id: str = "did1", headers: str = "") -> str:
    return call(
        f"sip:+{number}@trunk.sip.local",
        "sip:+15551234567@provider.example",
        call_id=call_id,
        headers=headers,
        port=PROVIDER.port,
    )


def agent_calls(switch: Switch, uri: str, user: str = "1001", **kwargs: Any) -> str:
    """The INVITE from an agent with the answer to its challenge."""
    challenged = switch.answer(call(uri, f"sip:{user}@sip.local", **kwargs))
    assert challenged.status == 407, challenged.reason
    auth = authorization(challenged, user, "INVITE", uri)
    headers = kwargs.pop("headers", "") + auth
    return call(uri, f"sip:{user}@sip.local", cseq=2, headers=headers, **kwargs)


def edited(tmp_path: Path, change: Callable[[list[dict[str, Any]]], None]) -> Path:
    """A copy of the example resources with ``change`` applied to their list."""
    resources = [
        item
        for name in ("sip-local.yaml", "pstn.yaml")
        for item in yaml.safe_load((ROOT / "config" / "resources" / name).read_text())
    ]
    change(resources)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "all.yaml").write_text(yaml.safe_dump(resources))
    return tmp_path


def spec(resources: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in resources if r["ref"] == ref)["spec"]
    return found


def peer_registers(
    switch: Switch, sender: NetInterface, *, sessions: int | None = None, contact: str = ""
) -> None:
    def register(cseq: int, auth: str) -> str:
        count = f"X-Session-Count: {sessions}\n" if sessions is not None else ""
        return (
            (
                "REGISTER sip:sip.local SIP/2.0\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{sender.port};branch=z9hG4bKv{cseq}{sender.port}\n"
                "From: <sip:voice@sip.local>;tag=v\nTo: <sip:voice@sip.local>\n"
                f"Call-ID: voice-{sender.port}\nCSeq: {cseq} REGISTER\nMax-Forwards: 70\n"
                f"Contact: <{contact or f'sip:voice@127.0.0.1:{sender.port}'}>\nExpires: 600\n"
                f"{count}{auth}Content-Length: 0\n\n"
            )
            .replace("sip:sip.local", "sip:media.local")
            .replace("@sip.local", "@media.local")
        )

    challenged = switch.answer(register(1, ""), sender)
    assert challenged.status == 401, challenged.reason
    challenge = Challenge.parse(challenged.get("WWW-Authenticate") or "")
    assert challenge.realm == "media.local"  # the host of the peer's AOR
    creds = answer(
        challenge,
        method="REGISTER",
        uri="sip:media.local",
        username="voice",
        password="voice-secret",
    )
    ok = switch.answer(register(2, f"Authorization: {creds}\n"), sender)
    assert ok.status == 200, ok.reason


# -- from the PSTN


def test_a_did_rings_the_agent_of_its_number_with_the_numbers_extra_headers() -> None:
    switch = Switch()
    registered(switch, "1001", ALICE)
    request, result = switch.forwarded(from_provider(ALICE_NUMBER), PROVIDER)
    assert str(request.uri) == "sip:1001@127.0.0.1:7001" and result.destination == ALICE
    assert request.get("X-Called-Number") == "+17853178070"
    assert "sg-sig=" in (request.get("Record-Route") or "")


def test_a_did_without_a_number_or_of_another_trunk_is_refused(tmp_path: Path) -> None:
    def another_trunk(resources: list[dict[str, Any]]) -> None:
        resources.append(
            {
                "apiVersion": "v2beta1",
                "kind": "Trunk",
                "ref": "trunk-other",
                "metadata": {"name": "Other"},
                "spec": {"inbound": {"uri": "other.sip.local"}},
            }
        )
        spec(resources, "number-voice")["trunkRef"] = "trunk-other"

    switch = Switch(edited(tmp_path, another_trunk))
    unknown = switch.answer(from_provider("15550000000"), PROVIDER)
    assert (unknown.status, unknown.reason) == (403, "Forbidden (No Such Number)")
    other = switch.answer(from_provider(VOICE_NUMBER), PROVIDER)
    assert (other.status, other.reason) == (403, "Forbidden (Number Of Another Trunk)")


def test_a_trunks_acl_and_inbound_credentials_are_enforced(tmp_path: Path) -> None:
    def guarded(resources: list[dict[str, Any]]) -> None:
        resources.append(
            {
                "apiVersion": "v2beta1",
                "kind": "AccessControlList",
                "ref": "acl-provider",
                "metadata": {"name": "The provider"},
                "spec": {"accessControlList": {"allow": ["127.0.0.2/32"], "deny": ["0.0.0.0/0"]}},
            }
        )
        inbound = spec(resources, "trunk-local")["inbound"]
        inbound["accessControlListRef"] = "acl-provider"
        inbound["credentialsRef"] = "credentials-trunk"

    switch = Switch(edited(tmp_path, guarded))
    registered(switch, "1001", ALICE)
    refused = switch.answer(from_provider(ALICE_NUMBER), PROVIDER)
    assert (refused.status, refused.reason) == (403, "Forbidden By Access Control List")
    provider = NetInterface("127.0.0.2", 5060, Transport.UDP)
    # no Request-URI host of the trunk needed: the source address names the trunk
    by_address = from_provider(ALICE_NUMBER).replace("trunk.sip.local", "192.0.2.10")
    challenged = switch.answer(by_address, provider)
    assert challenged.status == 407
    challenge = Challenge.parse(challenged.get("Proxy-Authenticate") or "", "Proxy-Authenticate")
    assert challenge.realm == "trunk.sip.local"
    creds = answer(
        challenge,
        method="INVITE",
        uri="sip:+17853178070@192.0.2.10",
        username="sipgrid",
        password="provider-secret",
    )
    with_auth = by_address.replace(
        "Content-Length", f"Proxy-Authorization: {creds}\nContent-Length"
    )
    request, _ = switch.forwarded(with_auth, provider)
    assert str(request.uri) == "sip:1001@127.0.0.1:7001"
    assert "Proxy-Authorization" not in request


# -- to the PSTN


def test_an_agent_calls_out_through_the_egress_policys_trunk_in_priority_order() -> None:
    switch = Switch()
    request, result = switch.forwarded(agent_calls(switch, "sip:+15551234567@sip.local"))
    assert str(request.uri) == "sip:+15551234567@127.0.0.1:5080;user=phone"
    assert result.destination is None  # the EdgePort locates each URI in turn
    assert result.alternatives == ["sip:+15551234567@127.0.0.1:5081;user=phone"]
    assert request.get("P-Asserted-Identity") == '"Alice" <sip:17853178070@127.0.0.1>'
    assert (request.get("Remote-Party-ID") or "").endswith("screen=yes;privacy=off")
    assert request.get("Privacy") == "none"
    assert "Proxy-Authorization" not in request and request.max_forwards == 69


def test_a_private_agent_is_hidden_and_a_callers_own_identity_is_not_passed_on(
    tmp_path: Path,
) -> None:
    def private(resources: list[dict[str, Any]]) -> None:
        spec(resources, "agent-1001")["privacy"] = "Private"

    switch = Switch(edited(tmp_path, private))
    forged = "P-Asserted-Identity: <sip:911@sip.local>\n"
    request, _ = switch.forwarded(agent_calls(switch, "sip:5551234567@sip.local", headers=forged))
    assert request.get_all("P-Asserted-Identity") == ['"Alice" <sip:17853178070@127.0.0.1>']
    assert request.get("Privacy") == "id"
    assert (request.get("Remote-Party-ID") or "").endswith("privacy=full")


def test_no_matching_egress_policy_is_refused_with_a_reason() -> None:
    switch = Switch()
    refused = switch.answer(agent_calls(switch, "sip:bob@example.com"))
    assert (refused.status, refused.reason) == (403, "Forbidden (No Egress Policy Matches)")
    switch2 = Switch()
    assert switch2.answer(agent_calls(switch2, "sip:1999@sip.local")).status == 404


def test_a_peer_calls_out_with_x_dod_number_and_privacy() -> None:
    switch = Switch()
    conference = "sip:conference@media.local"
    dod = f"X-DOD-Number: +{VOICE_NUMBER}\nX-DOD-Privacy: private\n"
    request, result = switch.forwarded(call("sip:+15550001111@sip.local", conference, headers=dod))
    assert str(request.uri) == "sip:+15550001111@127.0.0.1:5080;user=phone"
    assert (
        request.get("P-Asserted-Identity")
        == f'"Conference server (static, never registers)" <sip:{VOICE_NUMBER}@127.0.0.1>'
    )
    assert request.get("Privacy") == "id"
    assert "X-DOD-Number" not in request and "X-DOD-Privacy" not in request
    assert len(result.alternatives) == 1
    missing = switch.answer(call("sip:+15550001111@sip.local", conference, call_id="p2"))
    assert (missing.status, missing.reason) == (400, "Missing X-DOD-Number")
    unknown = switch.answer(
        call("sip:+15550001111@sip.local", conference, call_id="p3", headers="X-DOD-Number: 42\n")
    )
    assert (unknown.status, unknown.reason) == (404, "Unknown X-DOD-Number")
    public = switch.forwarded(
        call(
            "sip:+15550001111@sip.local",
            conference,
            call_id="p4",
            headers=f"X-DOD-Number: +{VOICE_NUMBER}\n",
        )
    )[0]
    assert public.get("Privacy") == "none"


def test_a_peer_is_known_by_its_acl_or_credentials_never_by_its_name_alone() -> None:
    switch = Switch()
    outsider = NetInterface("127.0.0.9", 7001, Transport.UDP)
    dod = f"X-DOD-Number: +{VOICE_NUMBER}\n"
    refused = switch.answer(
        call("sip:+15550001111@sip.local", "sip:conference@media.local", headers=dod), outsider
    )
    assert (refused.status, refused.reason) == (403, "Forbidden By Access Control List")
    challenged = switch.answer(
        call("sip:+15550001111@sip.local", "sip:voice@media.local", headers=dod), outsider
    )
    assert challenged.status == 407  # the registering peer proves itself by digest


# -- agents and peers


def test_an_agent_calls_a_static_peer_and_a_peer_calls_an_agent() -> None:
    switch = Switch()
    request, result = switch.forwarded(agent_calls(switch, "sip:conference@sip.local"))
    assert str(request.uri) == "sip:conference@127.0.0.1:5090"
    assert result.destination == NetInterface("127.0.0.1", 5090, Transport.UDP)
    registered(switch, "1002", BOB)
    back, result = switch.forwarded(
        call("sip:1002@sip.local", "sip:conference@media.local", call_id="p-a")
    )
    assert str(back.uri) == "sip:1002@127.0.0.1:7002" and result.destination == BOB


def test_calls_to_a_registered_peer_go_round_robin_or_stick_to_an_affinity_header() -> None:
    switch = Switch()
    peer_registers(switch, MEDIA_1)
    peer_registers(switch, MEDIA_2)
    ports = [
        switch.forwarded(from_provider(VOICE_NUMBER, call_id=f"rr{i}"), PROVIDER)[1].destination
        for i in range(4)
    ]
    assert [p.port if p else 0 for p in ports] == [7101, 7102, 7101, 7102]
    rooms = {
        room: {
            switch.forwarded(
                from_provider(VOICE_NUMBER, call_id=f"{room}{i}", headers=f"X-Room: {room}\n"),
                PROVIDER,
            )[1].destination
            for i in range(3)
        }
        for room in ("blue", "green", "red", "gold")
    }
    assert all(len(seen) == 1 for seen in rooms.values())
    assert len(set().union(*rooms.values())) == 2  # four rooms over both instances


def test_least_sessions_goes_to_the_least_busy_instance(tmp_path: Path) -> None:
    def least(resources: list[dict[str, Any]]) -> None:
        spec(resources, "peer-voice")["loadBalancing"] = {"algorithm": "least-sessions"}

    switch = Switch(edited(tmp_path, least))
    peer_registers(switch, MEDIA_1, sessions=12)
    peer_registers(switch, MEDIA_2, sessions=3)
    for i in range(3):
        _, result = switch.forwarded(from_provider(VOICE_NUMBER, call_id=f"ls{i}"), PROVIDER)
        assert result.destination == MEDIA_2
    peer_registers(switch, MEDIA_2, sessions=40)  # its next REGISTER reports more
    _, result = switch.forwarded(from_provider(VOICE_NUMBER, call_id="ls9"), PROVIDER)
    assert result.destination == MEDIA_1


def test_an_agent_calls_an_agent_of_another_domain_served_here(tmp_path: Path) -> None:
    def second_domain(resources: list[dict[str, Any]]) -> None:
        resources += [
            {
                "apiVersion": "v2beta1",
                "kind": "Domain",
                "ref": "domain-other",
                "metadata": {"name": "Other"},
                "spec": {"context": {"domainUri": "other.local"}},
            },
            {
                "apiVersion": "v2beta1",
                "kind": "Agent",
                "ref": "agent-2001",
                "metadata": {"name": "Carol"},
                "spec": {"username": "2001", "domainRef": "domain-other"},
            },
        ]

    switch = Switch(edited(tmp_path, second_domain))
    asyncio.run(switch.location.add_route("sip:2001@other.local", _route_to(BOB)))
    request, result = switch.forwarded(agent_calls(switch, "sip:2001@other.local"))
    assert str(request.uri) == "sip:2001@127.0.0.1:7002" and result.destination == BOB


def _route_to(where: NetInterface) -> Route:
    return Route(
        user="2001",
        host=where.host,
        port=where.port,
        contact_uri=f"sip:2001@{where.host}:{where.port}",
        registered_on=1_000_000.0,
        expires=600,
    )


def test_a_pstn_dialog_is_followed_by_our_record_route() -> None:
    """The callee's flow is unknown (the EdgePort locates the trunk URI): the route
    leaves it out rather than write an empty parameter, and still verifies."""
    switch = Switch()
    request, _ = switch.forwarded(agent_calls(switch, "sip:+15551234567@sip.local"))
    record_route = request.get("Record-Route") or ""
    assert "sg-callee" not in record_route and "sg-caller=" in record_route
    bye = (
        "BYE sip:provider@127.0.0.1:5080 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:7001;branch=z9hG4bKbye\n"
        f"Route: {record_route}\nFrom: <sip:1001@sip.local>;tag=caller\n"
        "To: <sip:+15551234567@sip.local>;tag=provider\nCall-ID: pstn1\n"
        "CSeq: 3 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
    forwarded, result = switch.forwarded(bye)
    assert str(forwarded.uri) == "sip:provider@127.0.0.1:5080" and result.destination is None


def test_an_agent_registered_on_two_devices_rings_on_both() -> None:
    switch = Switch()
    registered(switch, "1002", BOB)
    other = NetInterface("127.0.0.1", 7003, Transport.TCP)
    registered(switch, "1002", other, contact="127.0.0.1:7003;transport=tcp")
    request, result = switch.forwarded(agent_calls(switch, "sip:1002@sip.local"))
    assert "Record-Route" not in request and request.max_forwards == 69
    forks = {f.uri: f for f in result.forks}
    assert set(forks) == {"sip:1002@127.0.0.1:7002", "sip:1002@127.0.0.1:7003;transport=tcp"}
    udp, tcp = forks["sip:1002@127.0.0.1:7002"], forks["sip:1002@127.0.0.1:7003;transport=tcp"]
    assert udp.destination == BOB and len(udp.record_route) == 1
    assert tcp.target_flow == other and len(tcp.record_route) == 1  # we listen on UDP only
    assert "sg-callee=tcp~127.0.0.1~7003" in tcp.record_route[0]  # each branch its own flow
    assert "sg-callee=udp~127.0.0.1~7002" in udp.record_route[0]


def test_a_callee_connected_to_another_edgeport_is_reached_through_it() -> None:
    """Routr's bug #287: the callee's WebSocket is held by EdgePort "ep-a"; a call that
    arrives on "ep" goes to ep-a with a signed Route naming the connection, and ep-a's
    Connect sends it down that connection, record-routing itself."""
    switch = Switch()
    websocket = NetInterface("127.0.0.1", 40000, Transport.WS)
    edge_a = NetInterface("10.0.0.2", 5060, Transport.TCP)
    binding = _route_to(BOB)
    binding.user, binding.contact_uri = "1002", "sip:1002@df7jal23ls0d.invalid;transport=ws"
    binding.flow, binding.transport = str(websocket), Transport.WS
    binding.edge_port_ref = "ep-a"
    binding.listening_points = [NetInterface("10.0.0.2", 5060, Transport.UDP), edge_a]
    asyncio.run(switch.location.add_route("sip:1002@sip.local", binding))
    request, result = switch.forwarded(agent_calls(switch, "sip:1002@sip.local"))
    assert result.destination == edge_a and result.target_flow is None
    route = request.get("Route") or ""
    assert route.startswith("<sip:10.0.0.2:5060;transport=tcp;lr;sg-flow=ws~127.0.0.1~40000;")

    at_a = MessageRequest(
        ref="r2",
        edge_port_ref="ep-a",
        method="INVITE",
        sender=NetInterface("127.0.0.1", 5060, Transport.TCP),
        listening_points=[edge_a, NetInterface("10.0.0.2", 5062, Transport.WS)],
        message=request,
    )
    there = asyncio.run(switch.processor.process_message(at_a))
    assert isinstance(there.message, Request) and there.target_flow == websocket
    assert "Route" not in there.message
    record_routes = there.message.get_all("Record-Route")
    assert "10.0.0.2:5062;transport=ws" in record_routes[0]  # A's, facing the callee
    assert "sg-callee=ws~127.0.0.1~40000" in record_routes[0]

    forged = request.copy()
    forged.set("Route", route.replace("40000", "40001"))
    at_a.message = forged
    refused = asyncio.run(switch.processor.process_message(at_a))
    assert isinstance(refused.message, Response) and refused.message.status == 403


def test_a_pbx_registering_for_all_its_numbers_gets_the_dialled_number_as_user() -> None:
    """RFC 6140 (SIP-Connect 1.1): one Contact with ``bnc`` and no user stands for every
    number of the PBX; a call to one of them has that number as the Request-URI user."""
    switch = Switch()
    peer_registers(switch, MEDIA_1, contact="sip:127.0.0.1:7101;bnc")
    request, result = switch.forwarded(from_provider(VOICE_NUMBER), PROVIDER)
    assert str(request.uri) == f"sip:+{VOICE_NUMBER}@127.0.0.1:7101"
    assert result.destination == MEDIA_1


def test_a_domain_can_offer_sha256_first_and_refuses_what_it_did_not_offer(
    tmp_path: Path,
) -> None:
    """RFC 8760: one challenge per algorithm, the preferred first, one nonce. An answer
    in an algorithm the domain does not offer is challenged again (no downgrade)."""

    def algorithms(*names: str) -> Callable[[list[dict[str, Any]]], None]:
        def change(resources: list[dict[str, Any]]) -> None:
            spec(resources, "domain-local")["extended"] = {"digestAlgorithms": list(names)}

        return change

    def register(switch: Switch, algorithm: str, *, offered: list[str]) -> int:
        challenged = switch.answer(register_text("1001", 7001))
        found = [
            Challenge.parse(v, "WWW-Authenticate") for v in challenged.get_all("WWW-Authenticate")
        ]
        assert [c.algorithm for c in found] == offered and len({c.nonce for c in found}) == 1
        chosen = next((c for c in found if c.algorithm == algorithm), found[-1])
        creds = answer(
            Challenge(chosen.realm, chosen.nonce, algorithm=algorithm, qop=chosen.qop),
            method="REGISTER",
            uri="sip:sip.local",
            username="1001",
            password="1001-secret",
        )
        auth = f"Authorization: {creds}\n"
        return switch.answer(register_text("1001", 7001, cseq=2, auth=auth)).status

    both = Switch(edited(tmp_path / "both", algorithms("SHA-256", "MD5")))
    assert register(both, "SHA-256", offered=["SHA-256", "MD5"]) == 200
    assert register(both, "MD5", offered=["SHA-256", "MD5"]) == 200
    strict = Switch(edited(tmp_path / "strict", algorithms("SHA-256")))
    assert register(strict, "SHA-256", offered=["SHA-256"]) == 200
    assert register(strict, "MD5", offered=["SHA-256"]) == 401  # not offered: again
    default = Switch()
    assert register(default, "MD5", offered=["MD5"]) == 200

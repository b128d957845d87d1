"""The Connect processor, its registrar and its authenticator, driven directly with
MessageRequest objects and a fake clock: no sockets, no sleeping."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from email.utils import formatdate
from pathlib import Path

import pytest
import yaml

from sipgrid.api.types import (
    MessageRequest,
    MessageResponse,
    NetInterface,
    Transport,
)
from sipgrid.services.connect import auth as auth_module
from sipgrid.services.connect.auth import (
    Authenticator,
    MemoryNonceCounts,
    NonceCounts,
    Verdict,
)
from sipgrid.services.connect.context import CALLEE, signed_flows
from sipgrid.services.connect.guard import GuardSettings
from sipgrid.services.connect.processor import ConnectProcessor
from sipgrid.services.connect.resources import load_resources
from sipgrid.services.connect.tokens import TokenVerifier
from sipgrid.services.location.service import MemoryLocation
from sipgrid.services.metrics import exposition
from sipgrid.sip import Challenge, Request, Response, parse
from sipgrid.sip.digest import NonceState, answer, check_nonce

from .helpers import ROOT, Noted

KEY = b"k" * 32
US = NetInterface("127.0.0.1", 5060, Transport.UDP)
ALICE = NetInterface("127.0.0.1", 7001, Transport.UDP)
BOB = NetInterface("127.0.0.1", 7002, Transport.UDP)
PASSWORDS = {"1001": "1001-secret", "1002": "1002-secret"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Switch:
    """A Connect processor over the example resources, an in-memory Location and a clock;
    ``finds`` lists the AORs the processor looked up."""

    def __init__(
        self,
        resources_dir: Path = ROOT / "config" / "resources",
        tokens: TokenVerifier | None = None,
        counts: NonceCounts | None = None,
    ) -> None:
        self.clock = Clock()
        self.location = MemoryLocation(self.clock)
        noted = Noted(self.location)
        self.finds = noted.finds
        self.changes = noted.changes
        self.processor = ConnectProcessor(
            load_resources(resources_dir),
            noted,
            Authenticator(KEY, clock=self.clock, counts=counts),
            clock=self.clock,
            tokens=tokens,
        )

    def send(self, text: str, sender: NetInterface = ALICE) -> MessageResponse:
        message = parse(text.replace("\n", "\r\n").encode())
        request = MessageRequest(
            ref="r",
            edge_port_ref="ep",
            method=message.method if isinstance(message, Request) else "",
            sender=sender,
            listening_points=[US],
            message=message,
        )
        return asyncio.run(self.processor.process_message(request))

    def answer(self, text: str, sender: NetInterface = ALICE) -> Response:
        result = self.send(text, sender)
        assert isinstance(result.message, Response), result.message
        return result.message

    def forwarded(self, text: str, sender: NetInterface = ALICE) -> tuple[Request, MessageResponse]:
        result = self.send(text, sender)
        assert isinstance(result.message, Request), result.message
        return result.message, result


def register(
    user: str, port: int, *, cseq: int = 1, auth: str = "", expires: int = 60, contact: str = ""
) -> str:
    return (
        f"REGISTER sip:sip.local SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKr{cseq}{port}\n"
        f"From: <sip:{user}@sip.local>;tag=r{user}\nTo: <sip:{user}@sip.local>\n"
        f"Call-ID: reg-{user}\nCSeq: {cseq} REGISTER\nMax-Forwards: 70\n"
        f"Contact: <sip:{user}@{contact or f'127.0.0.1:{port}'}>\nExpires: {expires}\n"
        f"{auth}Content-Length: 0\n\n"
    )


def authorization(
    challenge_response: Response, user: str, method: str, uri: str, nc: int = 1
) -> str:
    header = "WWW-Authenticate" if challenge_response.status == 401 else "Proxy-Authenticate"
    challenge = Challenge.parse(challenge_response.get(header) or "", header)
    creds = answer(
        challenge, method=method, uri=uri, username=user, password=PASSWORDS[user], nc=nc
    )
    name = "Authorization" if challenge_response.status == 401 else "Proxy-Authorization"
    return f"{name}: {creds}\n"


def registered(switch: Switch, user: str, sender: NetInterface, contact: str = "") -> None:
    challenged = switch.answer(register(user, sender.port, contact=contact), sender)
    assert challenged.status == 401
    auth = authorization(challenged, user, "REGISTER", "sip:sip.local")
    ok = switch.answer(register(user, sender.port, cseq=2, auth=auth, contact=contact), sender)
    assert ok.status == 200, ok.reason


def invite(cseq: int, *, auth: str = "", max_forwards: int = 70, call_id: str = "call1") -> str:
    return (
        "INVITE sip:1002@sip.local SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:7001;branch=z9hG4bKi{cseq}\n"
        "From: <sip:1001@sip.local>;tag=alice\nTo: <sip:1002@sip.local>\n"
        f"Call-ID: {call_id}\nCSeq: {cseq} INVITE\nMax-Forwards: {max_forwards}\n"
        f"Contact: <sip:1001@127.0.0.1:7001>\n{auth}Content-Length: 0\n\n"
    )


# -- the registrar and the authenticator


def test_register_is_challenged_then_bound() -> None:
    switch = Switch()
    challenged = switch.answer(register("1001", 7001))
    assert challenged.status == 401
    challenge = Challenge.parse(challenged.get("WWW-Authenticate") or "")
    assert challenge.realm == "sip.local" and "auth" in challenge.qop and not challenge.stale
    auth = authorization(challenged, "1001", "REGISTER", "sip:sip.local")
    ok = switch.answer(register("1001", 7001, cseq=2, auth=auth))
    assert ok.status == 200 and "expires=60" in (ok.get("Contact") or "")
    routes = asyncio.run(switch.location.find_routes("sip:1001@sip.local"))
    assert [(r.host, r.port) for r in routes] == [("127.0.0.1", 7001)]
    # a quarter second on, the 200 lists both bindings with the time left, rounded up
    switch.clock.now += 0.25
    challenged = switch.answer(register("1001", 7002, cseq=3))
    auth = authorization(challenged, "1001", "REGISTER", "sip:sip.local")
    both = switch.answer(register("1001", 7002, cseq=4, auth=auth))
    assert both.status == 200 and both.get_all("Contact") == [
        "<sip:1001@127.0.0.1:7002>;expires=60",
        "<sip:1001@127.0.0.1:7001>;expires=60",
    ]


def test_the_last_binding_brings_the_routes_the_200_lists() -> None:
    """Location in another process answers a binding and the routes after it in one
    round trip (add_route_and_find): the registrar asks so for the last Contact of a
    REGISTER, and looks the routes up apart only when it bound none."""
    switch = Switch()
    two = "Contact: <sip:1001@127.0.0.1:7001>, <sip:1001@127.0.0.1:7002>\n"
    text = register("1001", 7001, cseq=1).replace("Contact: <sip:1001@127.0.0.1:7001>\n", two)
    challenged = switch.answer(text)
    auth = authorization(challenged, "1001", "REGISTER", "sip:sip.local")
    finds = len(switch.finds)
    ok = switch.answer(
        register("1001", 7001, cseq=2, auth=auth).replace(
            "Contact: <sip:1001@127.0.0.1:7001>\n", two
        )
    )
    assert ok.status == 200 and sorted(ok.get_all("Contact")) == [
        "<sip:1001@127.0.0.1:7001>;expires=60",
        "<sip:1001@127.0.0.1:7002>;expires=60",
    ]
    assert switch.changes == ["add_route", "add_route_and_find"]
    assert len(switch.finds) == finds  # no look-up apart
    # a REGISTER without Contact asks what is bound: the one look-up
    query = "\n".join(
        line
        for line in register("1001", 7001, cseq=3).split("\n")
        if not line.startswith("Contact")
    )
    challenged = switch.answer(query)
    auth = authorization(challenged, "1001", "REGISTER", "sip:sip.local")
    listed = switch.answer(query.replace("Content-Length", auth + "Content-Length"))
    assert listed.status == 200 and len(listed.get_all("Contact")) == 2
    assert switch.changes == ["add_route", "add_route_and_find"]
    assert switch.finds[finds:] == ["sip:1001@sip.local"]


def test_registrar_counts_what_it_answered_on_the_metrics_page() -> None:
    """sipgrid_registrations_total{result}: counted in a plain dict by the compiled
    registrar, read when /metrics is scraped."""

    def counted() -> dict[str, float]:
        found = {}
        for line in exposition().decode().splitlines():
            if line.startswith("sipgrid_registrations_total{"):
                labels, value = line.rsplit(" ", 1)
                found[labels.split('"')[1]] = float(value)
        return found

    before = counted()
    switch = Switch()
    challenged = switch.answer(register("1001", 7001))
    auth = authorization(challenged, "1001", "REGISTER", "sip:sip.local")
    assert switch.answer(register("1001", 7001, cseq=2, auth=auth)).status == 200
    after = counted()
    assert after["challenged"] == before.get("challenged", 0) + 1
    assert after["bound"] == before.get("bound", 0) + 1


def test_a_binding_s_200_is_dated_to_the_second() -> None:
    """The 200 carries the registrar's time (RFC 3261 section 10.3, step 8, and section
    20.17), formatted once a second: the same text within a second, the next after it."""
    switch = Switch()
    switch.clock.now = 1_000_000.75

    def dated(port: int) -> str | None:
        challenged = switch.answer(register("1001", port))
        auth = authorization(challenged, "1001", "REGISTER", "sip:sip.local")
        return switch.answer(register("1001", port, cseq=2, auth=auth)).get("Date")

    assert dated(7001) == formatdate(1_000_000, usegmt=True) == "Mon, 12 Jan 1970 13:46:40 GMT"
    switch.clock.now += 0.2
    assert dated(7002) == "Mon, 12 Jan 1970 13:46:40 GMT"
    switch.clock.now += 0.1
    assert dated(7003) == "Mon, 12 Jan 1970 13:46:41 GMT"


def test_a_replayed_nonce_count_is_challenged_again() -> None:
    switch = Switch()
    challenged = switch.answer(register("1001", 7001))
    auth = authorization(challenged, "1001", "REGISTER", "sip:sip.local", nc=1)
    assert switch.answer(register("1001", 7001, cseq=2, auth=auth)).status == 200
    replayed = switch.answer(register("1001", 7001, cseq=3, auth=auth))  # same nonce, same nc
    assert replayed.status == 401
    assert not Challenge.parse(replayed.get("WWW-Authenticate") or "").stale
    following = authorization(challenged, "1001", "REGISTER", "sip:sip.local", nc=2)
    assert switch.answer(register("1001", 7001, cseq=4, auth=following)).status == 200


def test_a_nonce_whose_count_was_forgotten_cannot_be_replayed() -> None:
    """The counts kept in memory are bounded (200,000 nonces, the least recently used
    forgotten first). At some 700 new nonces a second, a REGISTER avalanche or one
    account asking for challenge after challenge, a count was forgotten within the
    nonce's 300 s, and a captured answer was then taken again as a first use. A nonce
    that is not known and was issued no later than the newest one forgotten is refused."""
    switch = Switch(counts=MemoryNonceCounts(size=2))

    def exchange(port: int, cseq: int) -> str:
        switch.clock.now += 1
        challenged = switch.answer(register("1001", port, cseq=cseq))
        auth = authorization(challenged, "1001", "REGISTER", "sip:sip.local")
        assert switch.answer(register("1001", port, cseq=cseq + 1, auth=auth)).status == 200
        return auth

    captured = exchange(7001, 1)
    exchange(7002, 3)
    exchange(7003, 5)  # the first nonce's count is forgotten now
    replayed = switch.answer(register("1001", 7001, cseq=10, auth=captured))
    assert replayed.status == 401
    exchange(7004, 11)  # a nonce issued since is taken as ever


def test_a_replayed_proxy_authorization_is_challenged_again() -> None:
    switch = Switch()
    registered(switch, "1002", BOB)
    challenged = switch.answer(invite(1))
    assert challenged.status == 407
    auth = authorization(challenged, "1001", "INVITE", "sip:1002@sip.local")
    switch.forwarded(invite(2, auth=auth))
    assert switch.answer(invite(3, auth=auth, call_id="call2")).status == 407


def test_an_expired_nonce_is_stale_not_accepted() -> None:
    switch = Switch()
    challenged = switch.answer(register("1001", 7001))
    auth = authorization(challenged, "1001", "REGISTER", "sip:sip.local")
    switch.clock.now += 301  # nonces live 300 s
    stale = switch.answer(register("1001", 7001, cseq=2, auth=auth))
    assert stale.status == 401
    assert Challenge.parse(stale.get("WWW-Authenticate") or "").stale
    assert not asyncio.run(switch.location.find_routes("sip:1001@sip.local"))


def test_a_wrong_password_is_forbidden() -> None:
    switch = Switch()
    challenged = switch.answer(register("1001", 7001))
    challenge = Challenge.parse(challenged.get("WWW-Authenticate") or "")
    creds = answer(
        challenge, method="REGISTER", uri="sip:sip.local", username="1001", password="guess"
    )
    refused = switch.answer(register("1001", 7001, cseq=2, auth=f"Authorization: {creds}\n"))
    assert refused.status == 403


def test_the_agents_max_contacts_is_kept(tmp_path: Path) -> None:
    resources = yaml.safe_load((ROOT / "config" / "resources" / "sip-local.yaml").read_text())
    for resource in resources:
        if resource["kind"] == "Agent":
            resource["spec"]["maxContacts"] = 1
    (tmp_path / "sip-local.yaml").write_text(yaml.safe_dump(resources))
    shutil.copy(ROOT / "config" / "resources" / "pstn.yaml", tmp_path)  # its egress number
    switch = Switch(tmp_path)
    registered(switch, "1001", ALICE, contact="127.0.0.1:7001")
    switch.clock.now += 1
    registered(switch, "1001", NetInterface("127.0.0.1", 7003), contact="127.0.0.1:7003")
    routes = asyncio.run(switch.location.find_routes("sip:1001@sip.local"))
    assert [r.port for r in routes] == [7003]


def test_the_registrar_reads_the_resources_in_force(tmp_path: Path) -> None:
    """Who may register is remembered for the resources in force (a phone registers again
    and again): a new set read from the store counts from its first REGISTER on."""
    switch = Switch()
    registered(switch, "1001", ALICE, contact="127.0.0.1:7001")
    resources = yaml.safe_load((ROOT / "config" / "resources" / "sip-local.yaml").read_text())
    for resource in resources:
        if resource["kind"] == "Agent":
            resource["spec"]["maxContacts"] = 1
    (tmp_path / "sip-local.yaml").write_text(yaml.safe_dump(resources))
    shutil.copy(ROOT / "config" / "resources" / "pstn.yaml", tmp_path)
    fewer = load_resources(tmp_path)
    current = [switch.processor.resources()]
    now_in_force = lambda: current[0]  # noqa: E731 - what the store's refresh gives
    switch.processor.resources = switch.processor._registrar._resources = now_in_force
    registered(switch, "1001", ALICE, contact="127.0.0.1:7001")
    current[0] = fewer  # as keep_fresh swaps them
    switch.clock.now += 1
    registered(switch, "1001", NetInterface("127.0.0.1", 7003), contact="127.0.0.1:7003")
    routes = asyncio.run(switch.location.find_routes("sip:1001@sip.local"))
    assert [r.port for r in routes] == [7003]


# -- routing


def test_an_invite_is_routed_with_a_hop_spent_and_our_credentials_gone() -> None:
    switch = Switch()
    registered(switch, "1002", BOB)
    challenged = switch.answer(invite(1))
    auth = authorization(challenged, "1001", "INVITE", "sip:1002@sip.local")
    request, metadata = switch.forwarded(invite(2, auth=auth))
    assert request.max_forwards == 69
    assert str(request.uri) == "sip:1002@127.0.0.1:7002"
    assert metadata.destination == BOB
    assert "Proxy-Authorization" not in request
    assert "sg-sig=" in (request.get("Record-Route") or "")


def test_an_edgeport_may_follow_the_dialog_of_an_invite_sent_to_one_place() -> None:
    """MessageResponse.follow_dialog: set on an INVITE forwarded to one binding, whose
    dialog needs nothing of Connect but routing over its Record-Route; not on a fork, whose
    branches each record a route of their own, nor on the dialog's own requests."""
    switch = Switch()
    registered(switch, "1002", BOB)
    challenged = switch.answer(invite(1))
    auth = authorization(challenged, "1001", "INVITE", "sip:1002@sip.local")
    request, answer = switch.forwarded(invite(2, auth=auth))
    assert answer.follow_dialog
    _, bye = switch.forwarded(in_dialog("BYE", request.get("Record-Route") or ""))
    assert not bye.follow_dialog
    assert switch.processor.untouched_route("BYE") == "connect"
    registered(switch, "1002", NetInterface("127.0.0.1", 7003, Transport.UDP))
    challenged = switch.answer(invite(3, call_id="forked"))
    auth = authorization(challenged, "1001", "INVITE", "sip:1002@sip.local")
    _, forked = switch.forwarded(invite(4, auth=auth, call_id="forked"))
    assert len(forked.forks) == 2 and not forked.follow_dialog


def test_max_forwards_zero_gets_483_before_anything_else() -> None:
    switch = Switch()
    options = (
        "OPTIONS sip:1002@sip.local SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:7001;branch=z9hG4bKo\n"
        "From: <sip:1001@sip.local>;tag=a\nTo: <sip:1002@sip.local>\nCall-ID: o\n"
        "CSeq: 1 OPTIONS\nMax-Forwards: 0\nContent-Length: 0\n\n"
    )
    assert switch.answer(options).status == 483
    assert switch.answer(invite(1, max_forwards=0)).status == 483


def test_no_binding_480_unknown_user_404_outsider_403() -> None:
    switch = Switch()
    challenged = switch.answer(invite(1))
    auth = authorization(challenged, "1001", "INVITE", "sip:1002@sip.local")
    assert switch.answer(invite(2, auth=auth)).status == 480
    stranger = invite(3).replace("sip:1001@sip.local", "sip:1001@evil.example")
    assert switch.answer(stranger).status == 403


def in_dialog(
    method: str, route: str, *, from_tag: str = "alice", uri: str = "sip:1002@127.0.0.1:7002"
) -> str:
    return (
        f"{method} {uri} SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:7001;branch=z9hG4bKd{method}\n"
        f"Route: {route}\nFrom: <sip:1001@sip.local>;tag={from_tag}\n"
        "To: <sip:1002@sip.local>;tag=bob\nCall-ID: call1\n"
        f"CSeq: 5 {method}\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )


def test_in_dialog_requests_follow_only_our_signed_record_route() -> None:
    switch = Switch()
    registered(switch, "1002", BOB)
    challenged = switch.answer(invite(1))
    auth = authorization(challenged, "1001", "INVITE", "sip:1002@sip.local")
    request, _ = switch.forwarded(invite(2, auth=auth))
    record_route = request.get("Record-Route") or ""

    bye, metadata = switch.forwarded(in_dialog("BYE", record_route))
    assert metadata.destination == BOB and bye.max_forwards == 69
    assert "Route" not in bye  # our own Route is consumed

    # the callee's BYE goes back to the caller's flow
    _, back = switch.forwarded(
        in_dialog("BYE", record_route, from_tag="bob", uri="sip:1001@x"), BOB
    )
    assert back.destination == ALICE

    # an edited flow breaks the signature
    tampered = record_route.replace(f"{CALLEE}=udp~127.0.0.1~7002", f"{CALLEE}=udp~127.0.0.1~9999")
    assert tampered != record_route
    assert switch.answer(in_dialog("BYE", tampered)).status == 403
    # a signature of another dialog does not fit this one
    other = f"<sip:127.0.0.1:5060;lr{signed_flows(KEY, 'another-call')}>"
    assert switch.answer(in_dialog("BYE", other)).status == 403
    # and an ACK along a forged route goes nowhere
    ack = switch.send(in_dialog("ACK", "<sip:127.0.0.1:5060;lr>"))
    assert ack.drop


def test_our_credentials_never_leave_in_an_in_dialog_request() -> None:
    """A caller may repeat its Proxy-Authorization in the ACK and BYE (linphonec does):
    credentials for a realm sipgrid serves stay here; others' pass on."""
    switch = Switch()
    registered(switch, "1002", BOB)
    challenged = switch.answer(invite(1))
    auth = authorization(challenged, "1001", "INVITE", "sip:1002@sip.local")
    request, _ = switch.forwarded(invite(2, auth=auth))
    route = request.get("Record-Route") or ""
    other = (
        'Proxy-Authorization: Digest username="x", realm="upstream.example", nonce="n", '
        'uri="sip:x", response="00"\n'
    )
    for method in ("ACK", "BYE"):
        text = in_dialog(method, route).replace(
            "Max-Forwards: 70\n", "Max-Forwards: 70\n" + auth + other
        )
        forwarded_request, _ = switch.forwarded(text)
        values = forwarded_request.get_all("Proxy-Authorization")
        assert len(values) == 1 and "upstream.example" in values[0], values


@pytest.mark.parametrize("method", ["BYE", "INFO", "MESSAGE", "INVITE"])
def test_an_invented_to_tag_is_no_way_through(method: str) -> None:
    switch = Switch()
    text = in_dialog(method, "<sip:127.0.0.1:5060;lr>").replace(
        "Route: <sip:127.0.0.1:5060;lr>\n", ""
    )
    assert switch.answer(text).status == 403


def test_options_to_sipgrid_itself_is_answered() -> None:
    switch = Switch()
    options = (
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:7001;branch=z9hG4bKk\n"
        "From: <sip:trunk@provider.example>;tag=a\nTo: <sip:127.0.0.1>;tag=b\nCall-ID: k\n"
        "CSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
    ok = switch.answer(options)
    assert ok.status == 200 and "INVITE" in (ok.get("Allow") or "")


def test_a_digest_without_qop_cannot_be_replayed() -> None:
    switch = Switch()
    challenged = switch.answer(register("1001", 7001))
    challenge = Challenge.parse(challenged.get("WWW-Authenticate") or "")
    old_style = Challenge(realm=challenge.realm, nonce=challenge.nonce)  # no qop: RFC 2069
    creds = answer(
        old_style, method="REGISTER", uri="sip:sip.local", username="1001", password="1001-secret"
    )
    auth = f"Authorization: {creds}\n"
    assert switch.answer(register("1001", 7001, cseq=2, auth=auth)).status == 200
    for cseq in (3, 4, 5):  # the same answer again: challenged, never accepted
        assert switch.answer(register("1001", 7001, cseq=cseq, auth=auth)).status == 401


def test_a_source_that_guesses_passwords_is_banned_then_let_in_again() -> None:
    switch = Switch()
    switch.processor.guard.settings = GuardSettings(failures=5, window=60, ban_for=600)
    challenged = switch.answer(register("1001", 7001))
    challenge = Challenge.parse(challenged.get("WWW-Authenticate") or "")
    for n in range(5):
        guess = answer(
            challenge, method="REGISTER", uri="sip:sip.local", username="1001",
            password=f"guess-{n}", nc=n + 1,
        )  # fmt: skip
        refused = switch.answer(
            register("1001", 7001, cseq=n + 2, auth=f"Authorization: {guess}\n")
        )
        assert refused.status == 403 and refused.reason == "Forbidden (Bad Credentials)"
    right = authorization(challenged, "1001", "REGISTER", "sip:sip.local", nc=9)
    banned = switch.answer(register("1001", 7001, cseq=20, auth=right))
    assert banned.status == 403 and banned.reason == "Forbidden (Banned)"
    assert switch.answer(invite(1)).reason == "Forbidden (Banned)"  # everything from there
    other = NetInterface("127.0.0.9", 7009, Transport.UDP)
    assert switch.answer(register("1002", 7009), other).status == 401  # others are not
    switch.clock.now += 601
    registered(switch, "1001", ALICE)


def test_challenge_headers_are_what_a_challenge_writes() -> None:
    """The text kept around the nonce gives what str(Challenge) gives, for a realm that
    needs escaping too; one nonce for every algorithm, a new one each time, all ours."""
    auth = Authenticator(KEY, clock=lambda: 1000.0)
    algorithms = ("SHA-256", "MD5")
    for stale, realm in itertools.product((False, True), ("sip.local", 'a "quoted" \\ realm')):
        first = auth.challenge_headers(
            "WWW-Authenticate", realm, stale=stale, algorithms=algorithms
        )
        again = auth.challenge_headers(
            "WWW-Authenticate", realm, stale=stale, algorithms=algorithms
        )
        assert [name for name, _ in first] == ["WWW-Authenticate"] * 2
        parsed = [Challenge.parse(str(value)) for _, value in first]
        assert [c.algorithm for c in parsed] == list(algorithms)
        assert {c.nonce for c in parsed} == {parsed[0].nonce}
        assert Challenge.parse(str(again[0][1])).nonce != parsed[0].nonce
        for (_, value), challenge in zip(first, parsed, strict=True):
            assert challenge.realm == realm and challenge.stale is stale
            assert challenge.qop == ("auth",)
            assert str(value) == str(
                Challenge(realm, challenge.nonce, challenge.algorithm, ("auth",), stale=stale)
            )
            state = check_nonce(KEY, challenge.nonce, now=1000.0, ttl=30, realm=realm)
            assert state is NonceState.VALID
    proxy = auth.challenge_headers("Proxy-Authenticate", "sip.local")
    assert [name for name, _ in proxy] == ["Proxy-Authenticate"] * len(auth.algorithms)


def test_a_nonce_issued_here_is_known_by_its_text_for_its_own_realm_only() -> None:
    """``check`` takes a nonce this Authenticator issued lately from its memory of them,
    without decoding it and computing its MAC again; that memory answers only for the realm
    the nonce was issued for, and keeps the last ISSUED_KEPT, past which the MAC answers."""
    now = [1000.0]
    auth = Authenticator(b"k" * 32, clock=lambda: now[0])

    def issued(realm: str) -> str:
        header = str(auth.challenge_headers("WWW-Authenticate", realm)[0][1])
        return Challenge.parse(header, "WWW-Authenticate").nonce

    def verdict(nonce: str, realm: str) -> Verdict:
        creds = answer(
            Challenge(realm, nonce, "MD5", ("auth",)),
            method="REGISTER",
            uri="sip:sip.local",
            username="1001",
            password="pw",
        )
        found, _ = asyncio.run(auth.check("REGISTER", [creds], realm, {"1001": "pw"}.get))
        return found

    first = issued("a.local")
    assert verdict(first, "a.local") is Verdict.OK
    assert verdict(issued("a.local"), "b.local") is Verdict.CHALLENGE  # not for this realm
    now[0] += 301  # nonces live 300 s
    assert verdict(issued("a.local"), "a.local") is Verdict.OK
    stale = issued("a.local")
    now[0] += 301
    assert verdict(stale, "a.local") is Verdict.STALE
    # the memory answers, not the MAC: with the key changed (as it never is in service), a
    # nonce still remembered is taken, and one forgotten is not
    for _ in range(auth_module.ISSUED_KEPT):
        issued("a.local")
    remembered = issued("a.local")
    auth._key = b"other" * 8
    assert verdict(remembered, "a.local") is Verdict.OK
    auth._key = b"k" * 32
    forgotten = issued("a.local")
    for _ in range(auth_module.ISSUED_KEPT):
        issued("a.local")
    auth._key = b"other" * 8
    assert verdict(forgotten, "a.local") is Verdict.CHALLENGE  # its MAC checked: not ours now
    auth._key = b"k" * 32
    assert verdict(forgotten, "a.local") is Verdict.OK  # with the key that made it

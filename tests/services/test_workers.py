"""The pieces of SIPGRID_WORKERS that need no process: whose response it is, and the
worker's place as the supervisor writes it."""

from __future__ import annotations

import pytest

from sipgrid.api.types import NetInterface, Transport
from sipgrid.services.edgeport.workers import (
    RECEIVED,
    TRANSMIT,
    WorkerPlace,
    branch_owner,
    call_id_owner,
    owner,
    unwire,
    wire,
)


def response(*vias: str) -> bytes:
    lines = ["SIP/2.0 200 OK", *vias, "Call-ID: a@b", "CSeq: 1 INVITE", "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("vias", "owner"),
    [
        (["Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsg03aabbccddee0011223344"], 3),
        (["v: SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bKsg0aaabbccddee0011223344"], 10),
        (["via : SIP/2.0/UDP 127.0.0.1;BRANCH = z9hG4bKsg01aabbccddee0011223344;received=x"], 1),
        # ours below another hop's Via: the top one is not ours
        (
            [
                "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK776asdhds",
                "Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKsg01aabbccddee0011223344",
            ],
            None,
        ),
        (["Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK776, SIP/2.0/UDP a;branch=z9hG4bKsg01"], None),
        (["Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKsgzz"], None),
        ([], None),
    ],
)
def test_the_owner_of_a_response_is_in_its_top_via(vias: list[str], owner: int | None) -> None:
    assert branch_owner(response(*vias)) == owner


def test_a_hand_off_keeps_the_addresses_and_every_byte() -> None:
    flow = NetInterface("2001:db8::1", 5070, Transport.TCP)
    to = NetInterface("192.0.2.7", 5061, Transport.TLS)
    data = response("Via: SIP/2.0/TCP h;branch=z9hG4bKsg00") + b"\n\x00body"
    assert unwire(wire(RECEIVED, [flow], data)) == (RECEIVED, [flow], data)
    assert unwire(wire(TRANSMIT, [to, flow], data)) == (TRANSMIT, [to, flow], data)


@pytest.mark.parametrize(
    "text",
    [
        "1",
        "2/2/5/1,2,3",
        "0/1/5/",
        "a/2/5/1,2,3",
        "0/0/5/1",
        "0/256/5/1",
        "0/2/5/1,2",
        "0/2/x/1,2,3",
    ],
)
def test_a_bad_worker_place_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        WorkerPlace.parse(text)


def test_a_worker_place_reads_back() -> None:
    place = WorkerPlace.parse("1/2/7/4001,4002,4003")
    assert place == WorkerPlace(1, 2, 7, (4001, 4002, 4003))
    assert str(place) == "1/2/7/4001,4002,4003"
    assert place.address(0) == ("127.0.0.1", 4001)
    assert place.address(2) == ("127.0.0.1", 4003)  # the supervisor's
    assert WorkerPlace.parse("") is None


def request(call_id_line: str) -> bytes:
    lines = ["INVITE sip:a@b SIP/2.0", "Via: SIP/2.0/UDP h;branch=z9hG4bKsg01", call_id_line]
    return ("\r\n".join([*lines, "CSeq: 1 INVITE", "Content-Length: 0"]) + "\r\n\r\n").encode()


def test_a_request_goes_to_the_worker_of_its_call_id_in_every_worker() -> None:
    owners = {call_id_owner(request(f"Call-ID: call-{n}@host"), 4) for n in range(400)}
    assert owners == {0, 1, 2, 3}
    # the same Call-ID, however it is written, has the same owner; crc32 is the same in
    # every process (Python's own hash of a str is not)
    for line in ("i: abc@h", "Call-ID:abc@h ", "call-id :  abc@h"):
        assert call_id_owner(request(line), 7) == call_id_owner(request("Call-ID: abc@h"), 7)
    assert call_id_owner(request("Call-ID: 42@host"), 1000) == 617  # zlib.crc32 % 1000
    assert call_id_owner(b"INVITE sip:a@b SIP/2.0\r\n\r\n", 4) is None


def test_a_request_is_owned_by_its_call_id_and_a_response_by_its_branch() -> None:
    invite = request("Call-ID: abc@h")  # its Via names worker 1; a request's Via is not ours
    assert owner(invite, 4) == call_id_owner(invite, 4)
    answer = response("Via: SIP/2.0/UDP h;branch=z9hG4bKsg02aabb", "Call-ID: abc@h")
    assert owner(answer, 4) == 2

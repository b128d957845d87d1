"""The work that native/build.py's profile-guided build measures: a server's common paths.

Run by build.py between its two builds, on the first (instrumented) one: gcc's counters
say which branches and functions the work takes, and the second build lays the code out
by them (hot functions together, cold paths apart) and inlines where it pays. What runs
here: the EdgePort (its UDP shell, its carrier and its core) with Connect behind it, in one
process and without sockets (each datagram handed to the shell as the event loop hands it,
what it sends kept), as the all-in-one does it, for digest REGISTER exchanges and for
authenticated calls (INVITE, 407, INVITE with credentials, 180, 200, ACK, BYE, 200)
between agents 1001 and 1002 of config/resources; every second time each request and
answer also crosses as the distributed wiring carries them (to protobuf and back). Code
that this does not reach (the connections' shells, the streams, the frames) is built as
without a profile (``-fprofile-partial-training``). A message that does not get the answer
a server gives stops the build: a profile of failures would lay out the wrong code.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sipgrid.api import convert  # noqa: E402
from sipgrid.api.types import (  # noqa: E402
    MessageRequest,
    MessageResponse,
    NetInterface,
    Processor,
    Transport,
)
from sipgrid.services.connect.auth import Authenticator  # noqa: E402
from sipgrid.services.connect.processor import ConnectProcessor  # noqa: E402
from sipgrid.services.connect.resources import load_resources  # noqa: E402
from sipgrid.services.edgeport.carrier import Carrier, UdpShell  # noqa: E402
from sipgrid.services.edgeport.config import DEFAULT_METHODS  # noqa: E402
from sipgrid.services.edgeport.core import (  # noqa: E402
    Action,
    CallEvent,
    CoreSettings,
    EdgePortCore,
    Transmit,
)
from sipgrid.services.location.service import MemoryLocation  # noqa: E402
from sipgrid.sip.builders import build_ack, make_response  # noqa: E402
from sipgrid.sip.digest import authorization_for  # noqa: E402
from sipgrid.sip.message import Request, Response  # noqa: E402
from sipgrid.sip.parser import parse  # noqa: E402

RESOURCES = ROOT / "config" / "resources"
EDGE = NetInterface("127.0.0.1", 5060, Transport.UDP)
CALLER = NetInterface("127.0.0.1", 7001, Transport.UDP)
CALLEE = NetInterface("127.0.0.1", 7002, Transport.UDP)
PASSWORDS = {"1001": "1001-secret", "1002": "1002-secret"}  # config/resources/sip-local.yaml
ROUNDS = 400


class Socket:
    """What a UDP listening point's transport is to the shell: what it sends is kept."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def is_closing(self) -> bool:
        return False

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        self.sent.append((data, address))


class Owner:
    """The EdgePort, for what the carrier leaves to it: none of it happens here."""

    def _elsewhere(self, data: bytes, flow: NetInterface) -> bool:
        return False

    def _hand_to_worker_0(self, action: Transmit) -> bool:
        return False

    def _act(self, action: Action) -> None:
        raise RuntimeError(f"training: the core asked for {action!r}")

    def _on_call(self, event: CallEvent) -> None:
        pass

    def _on_timer(self) -> None:
        pass

    def _failed(self, token: object) -> None:
        raise RuntimeError("training: a message could not be sent")

    async def _connect_and_send(
        self, destination: NetInterface, data: bytes, token: object
    ) -> None:
        raise RuntimeError(f"training: a connection to {destination} was asked for")


class Crossing:
    """Connect as the distributed wiring reaches it: each request and answer to protobuf
    and back."""

    handles_responses = False

    def __init__(self, connect: ConnectProcessor) -> None:
        self.connect = connect

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        crossed = convert.request_from_pb(convert.request_to_pb(request, typed=False))
        answer = await self.connect.process_message(crossed)
        return convert.response_from_pb(
            convert.response_to_pb(answer, typed=False), crossed.message
        )


class Wire:
    """The EdgePort's core, its carrier and a UDP shell, as a datagram reaches them from
    the event loop, with Connect behind; what is sent, by destination."""

    def __init__(self) -> None:
        self.core = EdgePortCore(
            CoreSettings(
                ref="train",
                listening_points=[EDGE],
                methods=frozenset(DEFAULT_METHODS),
                handles_responses=False,
            )
        )
        connect = ConnectProcessor(
            load_resources(RESOURCES), MemoryLocation(), Authenticator(b"t" * 32)
        )
        # Connect itself, as the all-in-one hands it to the carrier, or across protobuf
        self.processors: dict[bool, Processor] = {False: connect, True: Crossing(connect)}
        self.carrier = Carrier(Owner(), connect, time.monotonic, {}, Counter())
        self.carrier.core = self.core
        self.socket = Socket()
        self.shell = UdpShell(self.carrier)
        self.shell.connection_made(self.socket)
        self.carrier.udp.append((False, self.shell))
        self.crossing = False  # each message to Connect and back as protobuf

    def send(
        self, data: bytes, source: NetInterface
    ) -> dict[NetInterface, list[Response | Request]]:
        self.socket.sent.clear()
        self.carrier.processor = self.processors[self.crossing]
        self.shell.datagram_received(data, source.address)
        self.carrier.run(self.core.handle_timers(time.monotonic()))
        if self.carrier.tasks:
            raise RuntimeError("training: Connect waited")
        sent: dict[NetInterface, list[Response | Request]] = {}
        for data, (host, port) in self.socket.sent:
            sent.setdefault(NetInterface(host, port, Transport.UDP), []).append(parse(data))
        return sent


def _request(
    method: str,
    uri: str,
    user: str,
    at: NetInterface,
    n: int,
    seq: int,
    extra: str = "",
    routes: str = "",
) -> Request:
    """A request of ``user``'s at ``at``: a REGISTER for itself, anything else to 1002;
    in the dialog of call ``n``, along its ``routes`` (Route lines), when they are given.
    Two rounds in each of two shapes, in turn: rport before the branch (as PJSIP writes its
    Via) and a Contact that names no transport, or rport after it (Linphone, baresip, sipp)
    and the transport named. A shape the training never sends is laid out as cold code:
    sipp's Via took ``_stamp_via``'s cold part in every request (bench/README.md, session
    39)."""
    body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"
    body = body if method == "INVITE" else ""
    to = f"<sip:{user}@sip.local>" if method == "REGISTER" else "<sip:1002@sip.local>"
    if routes:
        to += f";tag={n}-1002"
    branch = f"branch=z9hG4bK-{n}-{method}-{seq}"
    last = n // 2 % 2 == 1  # with ``crossing`` (n % 2), each of the four pairs in turn
    via = f"{branch};rport" if last else f"rport;{branch}"
    contact = f"{user}@{at.host}:{at.port}" + (";transport=udp" if last else "")
    request = parse(
        (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {at.host}:{at.port};{via}\r\n"
            f"From: <sip:{user}@sip.local>;tag={n}-{user}\r\nTo: {to}\r\n"
            f"Call-ID: {n}-{method if method == 'REGISTER' else 'call'}@train\r\n"
            f"CSeq: {seq} {method}\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:{contact}>\r\n{routes}{extra}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()
    )
    assert isinstance(request, Request)
    return request


def _answering(request: Request, challenged: Response, user: str) -> bytes:
    """``request`` with the credentials that answer ``challenged``."""
    header = authorization_for(request, challenged, user, PASSWORDS[user])
    if header is None:
        raise RuntimeError(f"training: no credentials answer {challenged!r}")
    request.add(*header)
    return request.serialize()


def _only(
    sent: dict[NetInterface, list[Response | Request]], to: NetInterface
) -> Response | Request:
    got = sent.get(to, [])
    if not got:
        raise RuntimeError(f"training: nothing sent to {to}: {sent}")
    return got[-1]


def _status(message: Response | Request, status: int) -> Response:
    if not isinstance(message, Response) or message.status != status:
        raise RuntimeError(f"training: {message!r} where {status} was due")
    return message


def _arrived(message: Response | Request, method: str) -> Request:
    if not isinstance(message, Request) or message.method != method:
        raise RuntimeError(f"training: {message!r} where the {method} was due at 1002")
    return message


def register(wire: Wire, n: int, user: str, at: NetInterface) -> None:
    """A digest REGISTER exchange: REGISTER, 401, REGISTER with credentials, 200."""
    first = _request("REGISTER", "sip:sip.local", user, at, n, 1, "Expires: 3600\r\n")
    challenged = _status(_only(wire.send(first.serialize(), at), at), 401)
    second = _request("REGISTER", "sip:sip.local", user, at, n, 2, "Expires: 3600\r\n")
    _status(_only(wire.send(_answering(second, challenged, user), at), at), 200)


def call(wire: Wire, n: int) -> None:
    """1001 calls 1002, who answers; 1001 hangs up."""
    uri = "sip:1002@sip.local"
    first = _request("INVITE", uri, "1001", CALLER, n, 1)
    challenged = _status(_only(wire.send(first.serialize(), CALLER), CALLER), 407)
    # the 407's ACK ends its transaction there (RFC 3261 section 17.2.1): nothing goes on
    absorbed = wire.send(build_ack(first, challenged).serialize(), CALLER)
    if absorbed:
        raise RuntimeError(f"training: the ACK of a 407 went on: {absorbed}")
    second = _answering(_request("INVITE", uri, "1001", CALLER, n, 2), challenged, "1001")
    forwarded = _arrived(_only(wire.send(second, CALLER), CALLEE), "INVITE")
    headers = [
        *(("Record-Route", v) for v in forwarded.get_all("Record-Route")),
        ("Contact", f"<sip:1002@{CALLEE.host}:{CALLEE.port}>"),
    ]
    for status in (180, 200):
        answer = make_response(forwarded, status, to_tag=f"{n}-1002", headers=headers)
        answered = _status(_only(wire.send(answer.serialize(), CALLEE), CALLER), status)
    routes = "".join(f"Route: {v}\r\n" for v in answered.get_all("Record-Route"))
    callee_uri = f"sip:1002@{CALLEE.host}:{CALLEE.port}"
    ack = _request("ACK", callee_uri, "1001", CALLER, n, 2, routes=routes).serialize()
    _arrived(_only(wire.send(ack, CALLER), CALLEE), "ACK")
    bye = _request("BYE", callee_uri, "1001", CALLER, n, 3, routes=routes).serialize()
    ended = _arrived(_only(wire.send(bye, CALLER), CALLEE), "BYE")
    _status(_only(wire.send(make_response(ended, 200).serialize(), CALLEE), CALLER), 200)


async def train() -> None:
    """The rounds, in an event loop (the carrier arms its timer on the running loop);
    nothing here waits, so the loop runs none of it."""
    wire = Wire()
    register(wire, 0, "1002", CALLEE)
    for n in range(1, ROUNDS + 1):
        wire.crossing = n % 2 == 0
        register(wire, n, "1001", CALLER)
        call(wire, n)


def main() -> int:
    started = time.monotonic()
    asyncio.run(train())
    print(f"training: {ROUNDS} REGISTER exchanges and calls in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

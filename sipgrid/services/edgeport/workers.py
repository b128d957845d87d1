"""Worker processes sharing one SIP port (SO_REUSEPORT), and what passes between them.

The kernel spreads UDP datagrams over the workers' sockets by a hash of the source and
destination addresses. That alone would tie each peer to one worker (a trunk that
carries most calls from one address would load one worker), and would not bring a
response back to the worker that sent the request. So every message has an owner, and
the worker that reads a message it does not own hands it to the owner:

- a request belongs to the worker of its Call-ID (a CRC-32 of it, modulo the number of
  workers), so a dialog's requests, retransmissions, ACKs and CANCELs from either side
  meet in one worker, whatever address they come from;
- a response belongs to the worker named in the branch of its top Via: each worker
  writes its number there (two hex digits after ``z9hG4bKsg``);
- connections are worker 0's: only it listens on the stream transports (TCP, TLS, WS,
  WSS), and a message that must leave on a connection it holds is handed to it.

Hand-offs go as UDP datagrams on 127.0.0.1, between sockets that the supervisor
(``sipgrid.services.supervisor``) opens once and hands each worker (the same socket again
to a worker it restarts); a worker takes hand-offs only from the other workers' ports. (Not
Unix datagram sockets: Linux queues at most net.unix.max_dgram_qlen, 10, datagrams for a
receiver, and a busy worker would lose hand-offs; a UDP socket queues up to its buffer.) A
hand-off that cannot be delivered is dropped, as a datagram would be: the sender's
retransmission tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from sipgrid.api.types import NetInterface

from .core import LOOP_MARK

log = logging.getLogger("sipgrid.edgeport")

RECEIVED = b"R"  # a message that reached the wrong worker, for its owner: [the flow it came on]
# a message for worker 0 to send: [destination] or [destination, flow]; the data is the
# hand-off's number, a newline, and the message
TRANSMIT = b"T"
# worker 0 to the worker that handed it a message to send: it could not be sent; [], the
# data is the hand-off's number
FAILED = b"F"
# worker 0 to another, when its metrics page is read: [], the data is the request's number
METRICS_ASK = b"M"
# the answer: [], the data is the request's number, a newline, and the worker's metric
# families (metrics.to_wire)
METRICS = b"m"
MAX_HANDOFF = 65_535
LOOPBACK = "127.0.0.1"
BUFFER = 4 * 1024 * 1024  # bytes queued for a busy worker (capped by net.core.rmem_max)
UP = b"up"  # a worker to the supervisor, once it serves
_FIRST_VIA = re.compile(rb"\r\n(?:via|v)[ \t]*:([^\r\n]*)", re.IGNORECASE)
_BRANCH = re.compile(rb";[ \t]*branch[ \t]*=[ \t]*([^;, \t]*)", re.IGNORECASE)
_CALL_ID = re.compile(rb"\r\n(?:call-id|i)[ \t]*:([^\r\n]*)", re.IGNORECASE)
_OURS = re.compile(LOOP_MARK.encode() + rb"([0-9a-f]{2})")


@dataclass(frozen=True)
class WorkerPlace:
    """Which worker this process is (``index``) of how many, the descriptor of its
    hand-off socket, and the hand-off port of every worker on 127.0.0.1, then the
    supervisor's."""

    index: int
    count: int
    fd: int
    ports: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> WorkerPlace | None:
        """``index/count/fd/port,port,...``, as the supervisor sets SIPGRID_WORKER (count
        + 1 ports); empty: not a worker."""
        if not text:
            return None
        parts = text.split("/")
        ports = parts[3].split(",") if len(parts) == 4 else []
        numbers = [*parts[:3], *ports]
        if not ports or not all(n.isdigit() for n in numbers):
            raise ValueError("not index/count/fd/port,port,...")
        index, count, fd = (int(n) for n in parts[:3])
        place = cls(index, count, fd, tuple(int(p) for p in ports))
        if not 0 <= index < count <= 255 or len(place.ports) != count + 1:
            raise ValueError(
                "not index/count/fd/ports with 0 <= index < count <= 255 and count + 1 ports"
            )
        return place

    def __str__(self) -> str:
        return f"{self.index}/{self.count}/{self.fd}/{','.join(map(str, self.ports))}"

    def address(self, index: int) -> tuple[str, int]:
        """Where worker ``index`` takes hand-offs (``count``: the supervisor)."""
        return (LOOPBACK, self.ports[index])


def handoff_socket() -> socket.socket:
    """A hand-off socket on a free port of 127.0.0.1 (the supervisor opens one per worker)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, BUFFER)
    return sock


def branch_owner(data: bytes) -> int | None:
    """The worker named in the branch of a response's top Via, read off the bytes on the
    wire; None when that Via is not one of ours."""
    via = _FIRST_VIA.search(data)
    if via is None:
        return None
    # the line's first branch is the top Via's (more values may follow, comma-separated)
    branch = _BRANCH.search(via.group(1))
    ours = _OURS.match(branch.group(1)) if branch is not None else None
    return int(ours.group(1), 16) if ours is not None else None


def call_id_owner(data: bytes, count: int) -> int | None:
    """The worker that takes a request of this Call-ID (a hash of it, the same in every
    worker); None when the bytes have no Call-ID (garbage: whoever has it answers)."""
    found = _CALL_ID.search(data)
    if found is None:
        return None
    return zlib.crc32(found.group(1).strip()) % count


def owner(data: bytes, count: int) -> int | None:
    """Which worker a message on the wire is for: a response, the worker whose branch is
    on it; a request, the worker of its Call-ID."""
    if data[:8] == b"SIP/2.0 ":
        return branch_owner(data)
    return call_id_owner(data, count)


def wire(kind: bytes, where: list[NetInterface], data: bytes) -> bytes:
    return kind + " ".join(str(w) for w in where).encode() + b"\n" + data


def unwire(packet: bytes) -> tuple[bytes, list[NetInterface], bytes]:
    head, _, data = packet.partition(b"\n")
    return head[:1], [NetInterface.parse(w) for w in head[1:].decode().split(" ") if w], data


class Handoffs:
    """This worker's socket for hand-offs: what arrives goes to ``take`` (kind, addresses,
    message, the worker it came from); ``send`` hands a message to another worker."""

    def __init__(
        self, place: WorkerPlace, take: Callable[[bytes, list[NetInterface], bytes, int], None]
    ) -> None:
        self.place = place
        self._take = take
        self._socket: socket.socket | None = None
        self._peers: dict[tuple[str, int], int] = {}

    def open(self) -> None:
        """Take the socket the supervisor handed down, and tell it this worker serves."""
        sock = socket.socket(fileno=self.place.fd)
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        self._socket = sock
        self._peers = {self.place.address(i): i for i in range(self.place.count)}
        with contextlib.suppress(OSError):
            sock.sendto(UP, self.place.address(self.place.count))

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
            self._socket = None

    def send(self, index: int, kind: bytes, where: list[NetInterface], data: bytes) -> bool:
        if self._socket is None:
            return False
        try:
            self._socket.sendto(wire(kind, where, data), self.place.address(index))
        except OSError as error:  # a message too big, or no buffer left
            log.info("hand-off to worker %d failed: %s", index, error)
            return False
        return True

    def _readable(self) -> None:
        assert self._socket is not None
        for _ in range(64):  # then let the loop serve the others
            try:
                packet, sender = self._socket.recvfrom(MAX_HANDOFF)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.warning("hand-off socket: %s", error)
                return
            index = self._peers.get(sender)
            if index is None:  # not from a worker of ours: not taken
                log.warning("a hand-off from %s, not a worker: dropped", sender)
                continue
            try:
                kind, where, data = unwire(packet)
            except ValueError:
                log.warning("a hand-off that is not one: %r", packet[:40])
                continue
            self._take(kind, where, data, index)

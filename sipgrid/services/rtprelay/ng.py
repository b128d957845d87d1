"""rtpengine's NG control protocol: bencoded dictionaries over UDP, each command
prefixed by a cookie that its answer repeats (rtpengine's ng_protocol.md)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

NgValue = bytes | int | list["NgValue"] | dict[bytes, "NgValue"]


class NgError(Exception):
    """rtpengine did not answer, or answered ``result: error``; str() says why."""


def bencode(value: Any) -> bytes:
    """Strings, bytes, integers, lists and dicts (keys sorted, as bencoding asks)."""
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list | tuple):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> NgValue:
    value, end = _decode(data, 0)
    if end != len(data):
        raise ValueError(f"bencode: {len(data) - end} bytes after the value")
    return value


def _decode(data: bytes, at: int) -> tuple[NgValue, int]:
    if at >= len(data):
        raise ValueError("bencode: truncated")
    lead = data[at : at + 1]
    if lead == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1 : end]), end + 1
    if lead == b"l":
        items: list[NgValue] = []
        at += 1
        while data[at : at + 1] != b"e":
            item, at = _decode(data, at)
            items.append(item)
        return items, at + 1
    if lead == b"d":
        mapping: dict[bytes, NgValue] = {}
        at += 1
        while data[at : at + 1] != b"e":
            key, at = _decode(data, at)
            if not isinstance(key, bytes):
                raise ValueError("bencode: a dictionary key must be a string")
            mapping[key], at = _decode(data, at)
        return mapping, at + 1
    if lead.isdigit():
        colon = data.index(b":", at)
        size = int(data[at:colon])
        start = colon + 1
        if start + size > len(data):
            raise ValueError("bencode: truncated string")
        return data[start : start + size], start + size
    raise ValueError(f"bencode: unexpected {lead!r} at {at}")


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[bytes, asyncio.Future[bytes]] = {}

    def datagram_received(self, data: bytes, addr: Any) -> None:
        cookie, _, body = data.partition(b" ")
        future = self.waiting.pop(cookie, None)
        if future is not None and not future.done():
            future.set_result(body)

    def error_received(self, exc: Exception) -> None:
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(NgError(f"rtpengine unreachable: {exc}"))
        self.waiting.clear()


class NgClient:
    """Commands to one rtpengine; each is sent up to ``attempts`` times, ``timeout``
    seconds apart, and the same cookie makes a repeated command safe (rtpengine
    answers a retransmission from its cache)."""

    def __init__(self, host: str, port: int, timeout: float = 1.0, attempts: int = 2) -> None:
        self.host = host
        self.port = port
        self._timeout = timeout
        self._attempts = attempts
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _Protocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _open(self) -> tuple[asyncio.DatagramTransport, _Protocol]:
        loop = asyncio.get_running_loop()
        if (
            self._transport is None
            or self._transport.is_closing()
            or self._protocol is None
            or self._loop is not loop  # a socket belongs to the loop that opened it
        ):
            self._transport, self._protocol = await loop.create_datagram_endpoint(
                _Protocol, remote_addr=(self.host, self.port)
            )
            self._loop = loop
        return self._transport, self._protocol

    async def command(self, name: str, **params: Any) -> dict[bytes, NgValue]:
        """Send one command; its answer when ``result`` is ok (or pong)."""
        transport, protocol = await self._open()
        cookie = secrets.token_hex(8).encode()
        packet = cookie + b" " + bencode({"command": name, **params})
        loop = asyncio.get_running_loop()
        for _ in range(self._attempts):
            future: asyncio.Future[bytes] = loop.create_future()
            protocol.waiting[cookie] = future
            transport.sendto(packet)
            try:
                body = await asyncio.wait_for(future, self._timeout)
            except TimeoutError:
                continue
            finally:
                protocol.waiting.pop(cookie, None)
            answer = bdecode(body)
            if not isinstance(answer, dict):
                raise NgError("rtpengine answered something that is not a dictionary")
            result = answer.get(b"result", b"")
            if result == b"error":
                reason = answer.get(b"error-reason", b"no reason given")
                raise NgError(
                    reason.decode(errors="replace") if isinstance(reason, bytes) else "error"
                )
            return answer
        raise NgError(f"rtpengine at {self.host}:{self.port} did not answer")

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

"""Parts of the distributed wiring killed (SIGKILL) and started again between calls:
while a part is down every request gets a clean 503 with Retry-After, and when it is
back everything works again without restarting the others, with no binding lost.
Redis is a private redis-server here (the machine's own is not ours to kill), with its
append-only file so that it keeps what it had."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from sipgrid.api.types import Route, Transport
from sipgrid.services.location.redis_store import RedisLocation, redis_client
from sipgrid.sip import Response, parse

from . import scenarios
from .harness import ROOT, Sipgrid, distributed, free_port, run_sipp, sipp_server


class PrivateRedis:
    """A redis-server of this test's own on loopback, stopped by the test."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is missing: run `make test`", pytrace=False)
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.directory), "--appendonly", "yes", "--save", ""]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def options(port: int, timeout: float = 3.0) -> Response:
    """An OPTIONS to sipgrid itself (Connect answers it): its final answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        me = sock.getsockname()[1]
        text = (
            "OPTIONS sip:sip.local SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKf{time.monotonic_ns()};rport\r\n"
            "From: <sip:1001@sip.local>;tag=f\r\nTo: <sip:sip.local>\r\n"
            f"Call-ID: fault-{time.monotonic_ns()}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(text.encode(), ("127.0.0.1", port))
        while True:
            message = parse(sock.recv(65535))
            if isinstance(message, Response) and message.status >= 200:
                return message


def until_served(port: int, timeout: float = 20.0) -> None:
    """Wait until sipgrid answers 200 again (gRPC channels reconnect with a backoff)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(TimeoutError, OSError):
            if options(port, timeout=1.0).status == 200:
                return
        assert time.monotonic() < deadline, "sipgrid did not recover"
        time.sleep(0.2)


def refused_while_down(sipgrid: Sipgrid) -> None:
    answer = options(sipgrid.port, timeout=10.0)  # gRPC waits 5 s for a part to come back
    assert answer.status == 503 and answer.get("Retry-After") == "5", answer


def register_bob(tmp_path: Path, sipgrid: Sipgrid, port: int) -> None:
    """The sipp UAS on ``port`` registered as 1002, for an hour."""
    registered = run_sipp(
        tmp_path,
        "register-1002",
        scenarios.register(200),
        server_port=sipgrid.port,
        user="1002",
        keys={"contact_port": str(port), "expires": "3600"},
    )
    assert registered.ok, registered.output


def call_through(tmp_path: Path, sipgrid: Sipgrid, name: str) -> None:
    """1001 calls 1002, the whole call, which must go through."""
    result = run_sipp(tmp_path, name, scenarios.call(), server_port=sipgrid.port)
    assert result.ok, result.output + sipgrid.log_text()[-3000:]


# Bob answers every call of the test, and lives longer than sipp's usual 20 s
BOB_ARGS = ["-m", "10", "-timeout", "300"]


def test_parts_killed_and_started_again(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    try:
        with (
            sipp_server(tmp_path, "bob", scenarios.uas("answer"), extra=BOB_ARGS) as (bob_port, _),
            distributed(tmp_path / "sipgrid", redis_url=redis.url) as sipgrid,
        ):
            register_bob(tmp_path, sipgrid, bob_port)

            def call(name: str) -> None:
                call_through(tmp_path, sipgrid, name)

            def refused_call(name: str) -> None:
                refused = run_sipp(
                    tmp_path, name, scenarios.call_rejected(503), server_port=sipgrid.port
                )
                assert refused.ok, refused.output + sipgrid.log_text()[-3000:]

            call("call-before")
            sipgrid.kill("connect")
            refused_while_down(sipgrid)  # nothing answers but the EdgePort
            sipgrid.resume("connect")
            until_served(sipgrid.port)
            call("call-after-connect")
            sipgrid.kill("location")
            refused_call("call-without-location")  # the 407 still comes, the route cannot
            sipgrid.resume("location")
            call("call-after-location")  # the binding outlived Location (it is in Redis)
            sipgrid.kill("apiserver")
            call("call-without-apiserver")  # Connect works on its last snapshot
            sipgrid.resume("apiserver")
            redis.kill()
            refused_call("call-without-redis")
            redis.start()  # the same port and directory: its append-only file
            call("call-after-redis")  # and the binding is still there
    finally:
        redis.kill()


class Cuttable:
    """A TCP relay to PostgreSQL that the test can cut (every connection reset, nothing
    accepted) and mend: the database goes away as far as sipgrid can tell, without
    touching the machine's own server."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._generation = 0  # which listener is the live one

    def mend(self) -> None:
        # the port can stay taken for a moment after a cut (CI saw EADDRINUSE once)
        deadline = time.monotonic() + 10
        while True:
            try:
                listener = socket.create_server(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self._listener = listener
        threading.Thread(
            target=self._accept, args=(listener, self._generation), daemon=True
        ).start()

    def cut(self) -> None:
        with self._lock:
            self._generation += 1
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket, generation: int) -> None:
        while True:
            try:
                client, _ = listener.accept()
                server = socket.create_connection(self.target)
            except OSError:
                return
            with self._lock:
                if generation != self._generation:  # accepted as the relay was cut
                    client.close()
                    server.close()
                    return
                self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_postgresql_going_away_and_coming_back(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    """The APIServer and Connect on PostgreSQL (through a relay the test cuts): while it
    is away, calls still go through (Connect routes on its snapshot, Location is on
    Redis) and a wrong password still gets its 403 (the ban is kept until it can be
    written); when it is back the API and `sipgrid bans` work again, nothing restarted."""
    url = urlsplit(postgres_url)
    relay = Cuttable((url.hostname or "127.0.0.1", url.port or 5432))
    relay.mend()
    through_relay = postgres_url.replace(url.netloc, f"{url.username}@127.0.0.1:{relay.port}")
    try:
        with (
            sipp_server(tmp_path, "bob", scenarios.uas("answer"), extra=BOB_ARGS) as (bob_port, _),
            distributed(
                tmp_path / "sipgrid", redis_url=redis_url, database_url=through_relay
            ) as sipgrid,
        ):
            register_bob(tmp_path, sipgrid, bob_port)

            def call(name: str) -> None:
                call_through(tmp_path, sipgrid, name)

            call("call-before")
            relay.cut()
            call("call-without-postgresql")
            wrong = run_sipp(
                tmp_path,
                "wrong-password",
                scenarios.register(403),
                server_port=sipgrid.port,
                password="guess",
            )
            assert wrong.ok, wrong.output + sipgrid.log_text()[-3000:]
            relay.mend()
            env = {**os.environ, "DATABASE_URL": through_relay}
            deadline = time.monotonic() + 20
            while True:  # the API answers again once its pool reconnects
                listed = subprocess.run(
                    [sys.executable, "-m", "sipgrid.cli", "bans", "list"],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                if listed.returncode == 0:
                    break
                assert time.monotonic() < deadline, listed.stderr
                time.sleep(0.5)
            assert "no source is banned" in listed.stdout  # one failure is no ban
            call("call-after-postgresql")
    finally:
        relay.cut()


OUTAGE = 6.5  # seconds Connect stays down in the load test


def test_connect_killed_in_the_middle_of_a_call_load(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 calls at 10 a second; Connect is killed after a second and started again
    OUTAGE seconds later, longer than an internal call waits for a part (5 s): calls of
    the first seconds of the outage get 503, later ones wait and go through. Every call
    ends: completed, or failed on a clean 503 (never a timeout).
    The restarted Connect has the same SIPGRID_NONCE_KEY (as the compose file gives every
    one): the ACKs and BYEs of calls set up before it died are still ours to route."""
    monkeypatch.setenv("SIPGRID_NONCE_KEY", "the key of every Connect, before and after")
    with (
        sipp_server(
            tmp_path, "bob", scenarios.uas("answer"), extra=["-m", "1000", "-timeout", "300"]
        ) as (bob_port, _),
        distributed(tmp_path / "sipgrid", redis_url=redis_url) as sipgrid,
    ):
        register_bob(tmp_path, sipgrid, bob_port)
        outcome: list[str] = []
        load = threading.Thread(
            target=lambda: outcome.append(
                run_sipp(
                    tmp_path,
                    "load",
                    scenarios.call(),
                    server_port=sipgrid.port,
                    extra=["-r", "10", "-m", "100", "-timeout", "60"],
                    timeout=90,
                ).output
            )
        )
        load.start()
        time.sleep(1.0)
        sipgrid.kill("connect")
        time.sleep(OUTAGE)
        sipgrid.resume("connect")
        load.join(timeout=100)
        output = outcome[0]
        ok = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", output)
        failed = re.search(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", output)
        assert ok and failed, output[-3000:]
        assert int(ok.group(1)) + int(failed.group(1)) == 100, output[-3000:]
        assert int(failed.group(1)) > 0  # the outage was felt
        errors = output.split("--- sipp errors ---")[-1]
        # why each failed call failed (sipp's own BYE for a call it gave up, a "Dead call",
        # carries no route set and gets our 403: that is sipp cleaning up, not a failure)
        finals = re.findall(
            r"Aborting call on unexpected message.*?received 'SIP/2.0 (\d+)", errors
        )
        assert finals and set(finals) == {"503"}, errors[-3000:]  # nothing else went wrong
        assert "timed out" not in errors, errors[-3000:]


REDIS_PAUSE = 6.0  # how long Redis stops answering (s)


def test_a_redis_that_stops_answering_fails_commands_instead_of_hanging_them(
    tmp_path: Path,
) -> None:
    """A Location on a Redis that stops answering (CLIENT PAUSE on a private redis-server):
    a write and a read each fail within their tries' read timeouts (``socket_timeout``,
    set short here) instead of waiting as long as the pause; once Redis answers again, so
    does the Location, on the same client."""
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    route = Route(
        user="1001",
        host="127.0.0.1",
        port=5070,
        transport=Transport.UDP,
        advertised_host="127.0.0.1",
        advertised_port=5070,
        expires=60,
        contact_uri="sip:1001@127.0.0.1:5070",
    )
    aor = "sip:1001@sip.local"

    async def scenario() -> None:
        location = RedisLocation(redis_client(f"{redis.url}?socket_timeout=0.3"))
        pauser = redis_client(redis.url)
        await location.add_route(aor, route)
        paused = time.monotonic()
        await pauser.client_pause(int(REDIS_PAUSE * 1000), all=True)
        for attempt in (location.add_route(aor, route), location.find_routes(aor, "c1")):
            started = time.monotonic()
            with pytest.raises(RedisTimeoutError):
                # the bound a lost timeout would hit: well before the pause ends
                await asyncio.wait_for(attempt, REDIS_PAUSE - 1)
            assert time.monotonic() - started < 3  # three tries of 0.3 s, and backoff
        await asyncio.sleep(paused + REDIS_PAUSE + 0.2 - time.monotonic())  # Redis answers again
        assert [r.port for r in await location.find_routes(aor, "c1")] == [5070]
        await location.close()
        await pauser.aclose()

    try:
        asyncio.run(scenario())
    finally:
        redis.kill()

"""Running sipgrid and sipp on loopback for end-to-end tests.

Every process started here is stopped by the fixture or context manager that started it.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"1001": "1001-secret", "1002": "1002-secret"}
DOMAIN = "sip.local"


# Ports handed to test servers come from below the kernel's ephemeral range (32768 and up
# here), where no client socket of another test lands by chance; a server that still finds
# its port taken fails at start (gRPC's SO_REUSEPORT is off) and is started again on others.
PORTS = range(20000, 32000)
# Ports for a peer that must not answer (sipgrid probes it, and nothing listens): outside
# PORTS, so that no test server on the other worker is handed one of them while a test
# probes it (a sipp server that got one aborted on the OPTIONS it did not expect).
QUIET_PORTS = range(32000, 32700)
ATTEMPTS = 6


def log_level() -> str:
    """What the services started here log: SIPGRID_TEST_LOG_LEVEL, read at each start (the
    benchmarks set it to warning after importing this module: a log line costs CPU), or info."""
    return os.environ.get("SIPGRID_TEST_LOG_LEVEL", "info")


def free_port(host: str = "127.0.0.1", ports: range = PORTS) -> int:
    """A port free for both UDP and TCP on ``host`` at the time of asking."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        port = random.choice(ports)
        try:
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                tcp.bind((host, port))
                with socket.socket(family, socket.SOCK_DGRAM) as udp:
                    udp.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port on 127.0.0.1")


def free_media_port(host: str = "127.0.0.1") -> int:
    """A port for sipp's -mp: sipp binds it for audio and the port two above it for video
    (RTP, UDP), so both must be free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        port = free_port(host, range(PORTS.start, PORTS.stop - 2))
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                udp.bind((host, port + 2))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no free media ports on {host}")


def quiet_port() -> int:
    """A free port on 127.0.0.1 that free_port never hands out: for a peer where nothing
    listens, until the test itself starts one there."""
    return free_port(ports=QUIET_PORTS)


class PortClash(RuntimeError):
    """A server could not bind a port that was free a moment before."""


def clashed(text: str) -> bool:
    return any(
        mark in text
        for mark in ("Address already in use", "address already in use", "errno = 98", "Errno 98")
    )


def require_sipp() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise RuntimeError(
            "sipp is missing: run `make test`, which installs it (Debian package sip-tester)"
        )
    return path


@dataclass
class Sipgrid:
    """A running sipgrid (all-in-one or distributed) with its SIP port."""

    port: int
    config_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    api_port: int = 0  # the internal Connect API (all-in-one)
    external_api_port: int = 0
    location_port: int = 0
    logs: list[Path] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)  # of the extra transports (first chain)
    host: str = "127.0.0.1"
    # distributed: how each service was started, to restart one
    steps: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    chain_ports: list[int] = field(default_factory=list)  # the SIP port of each chain
    chain_transports: list[dict[str, int]] = field(default_factory=list)  # their extra ports

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self, name: str) -> None:
        """Stop one service of the distributed wiring and start it again, as it was."""
        self.kill(name, signal.SIGTERM)
        self.resume(name)

    def kill(self, name: str, how: signal.Signals = signal.SIGKILL) -> None:
        """Stop one service (SIGKILL: no goodbye) and leave it down."""
        old = self.processes[list(self.steps).index(name)]
        old.send_signal(how)
        try:
            old.wait(timeout=5)
        except subprocess.TimeoutExpired:
            old.kill()
            old.wait()

    def resume(self, name: str) -> None:
        """Start a service stopped with ``kill`` again, as it was."""
        index = list(self.steps).index(name)
        args, env = self.steps[name]
        process, log = _start(self.config_dir, f"{name}-again", args, env)
        self.processes[index] = process
        self.logs.append(log)
        _wait_ready(process, log, "sipgrid: ready")

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())


def write_config(
    directory: Path,
    port: int,
    *,
    extra_resources: list[dict[str, object]] | None = None,
    edgeport: dict[str, object] | None = None,
    transports: dict[str, int] | None = None,
    host: str = "127.0.0.1",
    edit_pstn: Callable[[list[dict[str, Any]]], None] | None = None,
    ref: str = "edgeport-test",
) -> None:
    """An EdgePort on UDP and TCP of ``port`` (and ``transports``: {"ws": port, ...}),
    the example resources (``edit_pstn`` may change the list in pstn.yaml first)."""
    directory.mkdir(parents=True, exist_ok=True)
    listen = [{"protocol": "udp", "port": port}, {"protocol": "tcp", "port": port}]
    listen += [{"protocol": name, "port": number} for name, number in (transports or {}).items()]
    spec: dict[str, object] = {
        "bindAddr": host,
        "processor": {"addr": "127.0.0.1:51904"},
        "localnets": ["127.0.0.1/8", "::1/128"],
        "transport": listen,
    }
    spec.update(edgeport or {})
    config = {"kind": "EdgePort", "apiVersion": "v2beta1", "ref": ref, "spec": spec}
    (directory / "edgeport.yaml").write_text(yaml.safe_dump(config))
    resources = directory / "resources"
    resources.mkdir(exist_ok=True)
    shutil.copy(ROOT / "config" / "resources" / "sip-local.yaml", resources / "sip-local.yaml")
    pstn = yaml.safe_load((ROOT / "config" / "resources" / "pstn.yaml").read_text())
    if edit_pstn is not None:
        edit_pstn(pstn)
    (resources / "pstn.yaml").write_text(yaml.safe_dump(pstn))
    if extra_resources:
        (resources / "extra.yaml").write_text(yaml.safe_dump(extra_resources))


def redis_location(config_dir: Path, url: str) -> None:
    """location.yaml with the bindings in the Redis at ``url`` (which more than one worker
    of the all-in-one needs, too)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    cache = {"provider": "redis", "parameters": {"url": url}}
    location = {"kind": "Location", "spec": {"cache": cache}}
    (config_dir / "location.yaml").write_text(yaml.safe_dump(location))


def children(pid: int) -> list[int]:
    """The processes that ``pid`` started (a supervisor's workers)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _wait_ready(
    process: subprocess.Popen[bytes], log: Path, marker: str, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and marker in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            text = log.read_text(errors="replace")
            if clashed(text):
                raise PortClash(text)
            raise RuntimeError(f"sipgrid exited with {process.returncode}:\n{text}")
        time.sleep(0.05)
    raise RuntimeError(
        f"sipgrid did not get ready in {timeout} s:\n{log.read_text(errors='replace')}"
    )


@contextlib.contextmanager
def all_in_one(directory: Path, **config: object) -> Iterator[Sipgrid]:
    server = _retrying(lambda: _all_in_one(directory, **config))  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


def _retrying(launch: Callable[[], Sipgrid]) -> Sipgrid:
    """Launch, and launch again on other ports when a port was taken meanwhile."""
    for attempt in range(ATTEMPTS):
        try:
            return launch()
        except PortClash:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _all_in_one(
    directory: Path,
    transports: tuple[str, ...] = (),
    host: str = "127.0.0.1",
    env: dict[str, str] | None = None,
    dispatcher: dict[str, Any] | None = None,
    under: tuple[str, ...] = (),
    port: int = 0,
    **config: object,
) -> Sipgrid:
    """``under``: a command to run sipgrid under (bench.instructions runs valgrind; a NAT
    test, ``ip netns exec``); ``port``: SIP's (in a network namespace of the test's own,
    where every port is free and ``host`` is not an address of this one)."""
    port = port or free_port(host)
    extra = {name: free_port() for name in transports}
    write_config(directory, port, transports=extra, host=host, **config)  # type: ignore[arg-type]
    if dispatcher is not None:  # processors and middlewares of the test's own
        (directory / "dispatcher.yaml").write_text(yaml.safe_dump(dispatcher))
    api_port, external_api_port, location_port = free_port(), free_port(), free_port()
    env = {
        "SIPGRID_DATA_DIR": str(directory / "data"),
        "DATABASE_URL": "",
        "INTERNAL_BIND_ADDR": f"127.0.0.1:{api_port}",
        "EXTERNAL_BIND_ADDR": f"127.0.0.1:{external_api_port}",
        "LOCATION_BIND_ADDR": f"127.0.0.1:{location_port}",
        **(env or {}),
    }
    args = ["run", "--config-dir", str(directory)]
    process, log = _start(directory, "sipgrid", args, env, under)
    server = Sipgrid(
        port,
        directory,
        [process],
        logs=[log],
        api_port=api_port,
        external_api_port=external_api_port,
        location_port=location_port,
        ports=extra,
        host=host,
        steps={"sipgrid": (args, env)},
    )
    try:
        _wait_ready(process, log, "sipgrid: ready", 300.0 if under else 20.0)
    except BaseException:
        server.stop()
        raise
    return server


def _start(
    directory: Path,
    name: str,
    args: list[str],
    env: dict[str, str] | None = None,
    under: tuple[str, ...] = (),
) -> tuple[subprocess.Popen[bytes], Path]:
    log = directory / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*under, sys.executable, "-m", "sipgrid.cli", *args, "--log-level", log_level()],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
    return process, log


@contextlib.contextmanager
def distributed(directory: Path, **config: object) -> Iterator[Sipgrid]:
    """EdgePort, Dispatcher, Connect and Location as four processes talking gRPC."""
    server = _retrying(lambda: _distributed(directory, dict(config)))
    try:
        yield server
    finally:
        server.stop()


def _distributed(directory: Path, config: dict[str, object]) -> Sipgrid:
    """``chains=2`` starts a second EdgePort, Dispatcher, Connect and Location (config
    in ``directory/chain-2``, SIP on ``chain_ports[1]``) on the same APIServer and Redis."""
    chains = int(config.pop("chains", 1))  # type: ignore[call-overload]
    # every service run under a command (``ip netns exec``: on a host of the test's own),
    # its EdgePort on ``host`` and SIP ``port`` (as the all-in-one's)
    under: tuple[str, ...] = tuple(config.pop("under", ()) or ())  # type: ignore[arg-type]
    host = str(config.pop("host", "127.0.0.1"))
    sip_port = int(config.pop("port", 0))  # type: ignore[call-overload]
    transports: tuple[str, ...] = tuple(config.pop("transports", ()) or ())  # type: ignore[arg-type]
    redis = str(config.pop("redis_url", "") or "")
    edgeport_spec = dict(config.pop("edgeport", {}) or {})  # type: ignore[call-overload]
    # more environment for Connect (e.g. CONNECT_VERIFIER_*), and rtpengine's for an
    # RTPRelay the Dispatcher runs after Connect
    connect_env = dict(config.pop("connect_env", {}) or {})  # type: ignore[call-overload]
    # more environment for any service, by name ("location", "dispatcher", "apiserver", ...)
    service_env: dict[str, dict[str, str]] = dict(config.pop("service_env", {}) or {})  # type: ignore[call-overload]
    rtprelay_env = dict(config.pop("rtprelay_env", {}) or {})  # type: ignore[call-overload]
    # changes the dispatcher.yaml of each chain (a processor or middleware of the test's own)
    edit_dispatcher: Callable[[dict[str, Any]], None] | None = config.pop(  # type: ignore[assignment]
        "edit_dispatcher", None
    )
    port = sip_port or free_port()
    api_port = free_port()
    server = Sipgrid(port, directory, api_port=api_port, external_api_port=free_port(), host=host)
    # the APIServer's database: SQLite in its data directory, or ``database_url``
    database = str(config.pop("database_url", "") or "")
    api_env = {
        "SIPGRID_DATA_DIR": str(directory / "data"),
        "DATABASE_URL": database,
        "INTERNAL_BIND_ADDR": f"127.0.0.1:{api_port}",
        "EXTERNAL_BIND_ADDR": f"127.0.0.1:{server.external_api_port}",
    }
    database = database or f"sqlite:///{directory / 'data' / 'sipgrid.db'}"
    steps = [("apiserver", ["serve", "apiserver", "--config-dir", str(directory)], api_env)]
    for chain in range(1, chains + 1):
        chain_dir = directory if chain == 1 else directory / f"chain-{chain}"
        chain_port = port if chain == 1 else free_port()
        server.chain_ports.append(chain_port)
        suffix = "" if chain == 1 else f"-{chain}"
        location_port, connect_port, dispatcher_port = free_port(), free_port(), free_port()
        chain_dir.mkdir(parents=True, exist_ok=True)
        extra = {name: free_port() for name in transports}
        server.chain_transports.append(extra)
        if chain == 1:  # the first chain's, as the all-in-one's
            server.ports = extra
        write_config(
            chain_dir,
            chain_port,
            edgeport={**edgeport_spec, "processor": {"addr": f"127.0.0.1:{dispatcher_port}"}},
            transports=extra,
            host=host,
            ref=f"edgeport-test{suffix}",
            **config,  # type: ignore[arg-type]
        )
        if redis:  # Location on Redis; Connect keeps its nonce counts and turns there too
            redis_location(chain_dir, redis)
        relay_port = free_port() if rtprelay_env else 0
        dispatcher = _dispatcher(dispatcher_port, connect_port, relay_port)
        if edit_dispatcher is not None:
            edit_dispatcher(dispatcher)
        (chain_dir / "dispatcher.yaml").write_text(yaml.safe_dump(dispatcher))
        config_dir = ["--config-dir", str(chain_dir)]
        if relay_port:
            steps.append(
                (
                    f"rtprelay{suffix}",
                    ["serve", "rtprelay", "--bind-addr", f"127.0.0.1:{relay_port}"],
                    rtprelay_env,
                )
            )
        steps += [
            (
                f"location{suffix}",
                ["serve", "location", *config_dir, "--bind-addr", f"127.0.0.1:{location_port}"],
                {},
            ),
            (
                f"connect{suffix}",
                ["serve", "connect", *config_dir, "--bind-addr", f"127.0.0.1:{connect_port}"],
                {
                    "LOCATION_ADDR": f"127.0.0.1:{location_port}",
                    "APISERVER_ADDR": f"127.0.0.1:{api_port}",
                    # the APIServer's database: bans shared, `sipgrid bans` sees them
                    "DATABASE_URL": database,
                    **({"REDIS_URL": redis} if redis else {}),
                    **connect_env,
                },
            ),
            (f"dispatcher{suffix}", ["serve", "dispatcher", *config_dir], {}),
            (f"edgeport{suffix}", ["serve", "edgeport", *config_dir], {}),
        ]
    # the services start side by side (a second each of imports); only Connect waits,
    # for the APIServer it reads its resources from at start
    try:
        started: list[tuple[subprocess.Popen[bytes], Path]] = []
        for name, args, env in steps:
            env = {**env, **service_env.get(name, {})}
            server.steps[name] = (args, env)
            if name.startswith("connect"):
                _wait_ready(*started[0], "sipgrid: ready")  # the APIServer
            process, log = _start(directory, name, args, env, under)
            server.processes.append(process)
            server.logs.append(log)
            started.append((process, log))
        for process, log in started:
            _wait_ready(process, log, "sipgrid: ready")
    except BaseException:
        server.stop()
        raise
    return server


def _dispatcher(dispatcher_port: int, connect_port: int, relay_port: int = 0) -> dict[str, Any]:
    middlewares = [
        {
            "ref": "rtprelay",
            "addr": f"127.0.0.1:{relay_port}",
            "postProcessor": True,
            "methods": ["INVITE", "ACK", "BYE", "CANCEL"],  # as deploy/config's
        }
    ]
    return {
        "kind": "MessageDispatcher",
        "apiVersion": "v2beta1",
        "ref": "dispatcher-test",
        "spec": {
            "bindAddr": f"127.0.0.1:{dispatcher_port}",
            "processors": [
                {
                    "ref": "connect-processor",
                    "addr": f"127.0.0.1:{connect_port}",
                    "matchFunc": "req => true",
                    "methods": [
                        "REGISTER",
                        "INVITE",
                        "ACK",
                        "BYE",
                        "CANCEL",
                        "OPTIONS",
                        "MESSAGE",
                        "INFO",
                        "UPDATE",
                        "PRACK",
                        "REFER",
                        "NOTIFY",
                    ],
                }
            ],
            "middlewares": middlewares if relay_port else [],
        },
    }


@dataclass
class SippResult:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _sipp_args(
    scenario_file: Path,
    target: str | None,
    port: int,
    transport: str,
    keys: dict[str, str],
    extra: list[str],
    host: str = "127.0.0.1",
) -> list[str]:
    args = [
        require_sipp(),
        *([target] if target else []),
        "-sf",
        str(scenario_file),
        "-i",
        host,
        "-p",
        str(port),
        "-t",
        "u1" if transport == "udp" else "t1",
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "20",
        "-timeout_error",
        "-max_recv_loops",
        "1000",
        "-trace_err",
        "-error_file",
        str(scenario_file.with_suffix(".errors.log")),
    ]
    for key, value in keys.items():
        args += ["-key", key, value]
    return args + extra


def write_scenario(directory: Path, name: str, xml: str) -> Path:
    path = directory / f"{name}.xml"
    path.write_text(xml)
    return path


def run_sipp(
    directory: Path,
    name: str,
    xml: str,
    *,
    server_port: int,
    transport: str = "udp",
    user: str = "1001",
    password: str | None = None,
    keys: dict[str, str] | None = None,
    extra: list[str] | None = None,
    port: int | None = None,
    timeout: float = 40.0,
    host: str = "127.0.0.1",
) -> SippResult:
    """Run a sipp client scenario against sipgrid (on ``host``: 127.0.0.1 or ::1)."""
    scenario = write_scenario(directory, name, xml)
    server = f"[{host}]" if ":" in host else host
    for attempt in range(ATTEMPTS):
        sipp_port = port or free_port(host)
        all_keys = {
            "user": user,
            "domain": DOMAIN,
            "contact_host": server,
            "contact_port": str(sipp_port),
            "expires": "60",
            "callee": "1002",
        }
        all_keys.update(keys or {})
        auth = ["-au", user, "-ap", password if password is not None else PASSWORDS.get(user, "x")]
        args = _sipp_args(
            scenario,
            f"{server}:{server_port}",
            sipp_port,
            transport,
            all_keys,
            auth + (extra or []),
            host,
        )
        completed = subprocess.run(
            args, capture_output=True, timeout=timeout, cwd=directory, check=False
        )
        output = completed.stdout.decode(errors="replace") + completed.stderr.decode(
            errors="replace"
        )
        if (
            completed.returncode != 0
            and port is None
            and clashed(output)
            and attempt < ATTEMPTS - 1
        ):
            continue  # our sipp's port was taken meanwhile: again on another
        break
    errors = scenario.with_suffix(".errors.log")
    if errors.exists():
        output += "\n--- sipp errors ---\n" + errors.read_text(errors="replace")[-3000:]
    return SippResult(completed.returncode, output)


def register_agent(
    directory: Path,
    sipgrid: Sipgrid,
    port: int,
    user: str = "1001",
    transport: str = "udp",
    name: str = "",
) -> None:
    """The sipp UAS on ``port`` registered as ``user`` (with digest) over ``transport``."""
    from . import scenarios

    registered = run_sipp(
        directory,
        name or f"register-{user}",
        scenarios.register(200),
        server_port=sipgrid.port,
        transport=transport,
        user=user,
        keys={"contact_port": str(port)},
    )
    assert registered.ok, registered.output


@contextlib.contextmanager
def registered_callee(
    directory: Path, sipgrid: Sipgrid, transport: str = "udp"
) -> Iterator[subprocess.Popen[bytes]]:
    """A sipp UAS that answers one call, registered as 1002 (the callee of the scenarios)."""
    from . import scenarios

    with sipp_server(
        directory, "uas", scenarios.uas("answer"), transport=transport, host=sipgrid.host
    ) as (port, uas):
        registered = run_sipp(
            directory,
            "register-1002",
            scenarios.register(200),
            server_port=sipgrid.port,
            transport=transport,
            user="1002",
            keys={"contact_port": str(port)},
            host=sipgrid.host,
        )
        assert registered.ok, registered.output + sipgrid.log_text()[-2000:]
        yield uas


@contextlib.contextmanager
def sipp_server(
    directory: Path,
    name: str,
    xml: str,
    *,
    transport: str = "udp",
    keys: dict[str, str] | None = None,
    extra: list[str] | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    media: bool = False,
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A sipp in server mode on ``port`` or a free one; yields (port, process). Stopped on exit.
    ``media``: sipp's media ports (-mp) too, chosen afresh on each attempt, as the SIP port is."""
    scenario = write_scenario(directory, name, xml)
    all_keys = {"user": "1001", "callee": "1002", "domain": DOMAIN}
    all_keys.update(keys or {})
    log = directory / f"{name}.out"
    wanted = port
    bound = 0
    for attempt in range(ATTEMPTS):
        bound = wanted or free_port(host)
        more = [*(extra or []), *(["-mp", str(free_media_port(host))] if media else [])]
        args = _sipp_args(scenario, None, bound, transport, all_keys, more, host)
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=directory)
        time.sleep(0.3)
        if process.poll() is None:
            break
        text = log.read_text(errors="replace")
        # a port of ours was taken meanwhile: try others (the media ports, if not the SIP one)
        if not clashed(text) or (wanted and not media) or attempt == ATTEMPTS - 1:
            raise RuntimeError(f"sipp server exited at once:\n{text}")
    try:
        yield bound, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGUSR1) if os.name == "posix" else None
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def page(url: str) -> str:
    """A page of a server's HTTP endpoint (/metrics, say)."""
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


def event(text: str, name: str) -> float:
    """An EdgePort's count of one of its events (0 when it has none)."""
    found = re.search(rf'^sipgrid_edgeport_events_total{{event="{name}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def wait_for_log(sipgrid: Sipgrid, text: str, timeout: float = 15.0) -> None:
    """Until ``text`` shows in the server's log (fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while text not in sipgrid.log_text():
        assert time.monotonic() < deadline, f"no {text!r} in:\n{sipgrid.log_text()[-3000:]}"
        time.sleep(0.1)


def wait_exit(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -1


KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"


@contextlib.contextmanager
def kamailio(
    directory: Path, write_config: Callable[[Path], Any], shared_mb: int = 64
) -> Iterator[Any]:
    """Debian's Kamailio on loopback, with the config ``write_config(path)`` writes (it
    picks its free ports and returns what the test needs, e.g. them); started again with
    a new config when a port was taken meanwhile; stopped on exit. ``shared_mb``: its
    shared memory, where its transactions live."""
    binary = shutil.which("kamailio")
    if binary is None:
        import pytest

        pytest.fail("kamailio is missing: run `make test`", pytrace=False)
    directory.mkdir(parents=True, exist_ok=True)
    cfg, log = directory / "kamailio.cfg", directory / "kamailio.log"
    for _ in range(ATTEMPTS):
        found = write_config(cfg)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    *(binary, "-f", str(cfg), "-DD", "-E", "-Y", str(directory)),
                    *("-m", str(shared_mb), "-M", "8"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        time.sleep(1.0)
        if process.poll() is None:
            break
        if not clashed(log.read_text(errors="replace")):
            raise RuntimeError(f"kamailio exited:\n{log.read_text(errors='replace')}")
    else:
        raise PortClash("kamailio found no free ports")
    try:
        yield found
    finally:
        stop_group(process)


@dataclass
class Rtpengine:
    ng_port: int
    log: Path
    media_ports: range

    @property
    def env(self) -> dict[str, str]:
        """What sipgrid needs to use it (Routr's variables)."""
        return {"RTPENGINE_HOST": "127.0.0.1", "RTPENGINE_PORT": str(self.ng_port)}


@contextlib.contextmanager
def rtpengine(directory: Path) -> Iterator[Rtpengine]:
    """Debian's rtpengine in userspace (no kernel module) on loopback: its NG control
    port and a block of media ports of its own; stopped on exit."""
    binary = shutil.which("rtpengine")
    if binary is None:
        import pytest

        pytest.fail("rtpengine is missing: run `make test`", pytrace=False)
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "rtpengine.log"
    for _ in range(ATTEMPTS):
        ng_port = free_port()
        low = random.randrange(PORTS.start, PORTS.stop - 200, 2)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    binary,
                    "--config-file=none",
                    "--foreground",
                    "--log-stderr",
                    "--table=-1",
                    "--interface=127.0.0.1",
                    f"--listen-ng=127.0.0.1:{ng_port}",
                    f"--port-min={low}",
                    f"--port-max={low + 199}",
                    "--log-level=6",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            if "Startup complete" in log.read_text(errors="replace"):
                break
            time.sleep(0.05)
        if process.poll() is None:
            break
        if not clashed(log.read_text(errors="replace")):
            raise RuntimeError(f"rtpengine exited:\n{log.read_text(errors='replace')}")
    else:
        raise PortClash("rtpengine found no free ports")
    try:
        yield Rtpengine(ng_port, log, range(low, low + 200))
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a peer started in a session of its own (it may have children): TERM, then
    KILL after 5 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def background(
    args: list[str],
    log: Path,
    marker: str,
    *,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """A helper process of a test (a processor, say), running once ``marker`` shows in its
    output; stopped on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        while marker not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, f"{args[0]} did not start:\n{log.read_text()}"
            time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=5)


# -- hosts behind a NAT: network namespaces joined by veth pairs


@dataclass
class NatNetwork:
    """Three network namespaces: ``server`` (198.51.100.10, the softswitch's host), ``nat``
    (a router that masquerades: 198.51.100.1 outside, 10.0.0.1 inside, and a source port
    of its own choosing for every flow) and ``lan`` (10.0.0.2, behind it; its default
    route is the router; it knows the server as ``server_name``). Nothing in them has a
    route out of this machine."""

    prefix: str
    server_name: str = "sipgrid.test"  # the server's name on the lan (its /etc/hosts)
    server_ip: str = "198.51.100.10"
    public_ip: str = "198.51.100.1"  # what the server sees of the lan
    lan_ip: str = "10.0.0.2"

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def run_in(self, name: str) -> tuple[str, ...]:
        """The prefix that runs a command on one of the hosts."""
        return ("ip", "netns", "exec", self.ns(name))


# the router's source ports: outside PORTS, where the phones listen, so that every UDP
# flow's port changes on its way out
NAT_PORTS = "40000-40999"


@contextlib.contextmanager
def nat_network() -> Iterator[NatNetwork]:
    """A :class:`NatNetwork`, removed when done. Needs root (``ip netns``)."""
    if os.geteuid() != 0:
        raise AssertionError("network namespaces need root (ip netns): run the tests as root")
    net = NatNetwork(f"sg{os.getpid()}{random.randrange(10**6)}")
    wan, lan = f"{net.prefix[-8:]}w", f"{net.prefix[-8:]}l"
    steps = [
        *(["ip", "netns", "add", net.ns(n)] for n in ("server", "nat", "lan")),
        ["ip", "link", "add", f"{wan}0", "type", "veth", "peer", "name", f"{wan}1"],
        ["ip", "link", "add", f"{lan}0", "type", "veth", "peer", "name", f"{lan}1"],
        ["ip", "link", "set", f"{wan}0", "netns", net.ns("server")],
        ["ip", "link", "set", f"{wan}1", "netns", net.ns("nat")],
        ["ip", "link", "set", f"{lan}0", "netns", net.ns("nat")],
        ["ip", "link", "set", f"{lan}1", "netns", net.ns("lan")],
        ["ip", "-n", net.ns("server"), "addr", "add", f"{net.server_ip}/24", "dev", f"{wan}0"],
        ["ip", "-n", net.ns("nat"), "addr", "add", f"{net.public_ip}/24", "dev", f"{wan}1"],
        ["ip", "-n", net.ns("nat"), "addr", "add", "10.0.0.1/24", "dev", f"{lan}0"],
        ["ip", "-n", net.ns("lan"), "addr", "add", f"{net.lan_ip}/24", "dev", f"{lan}1"],
        *(["ip", "-n", net.ns(n), "link", "set", "lo", "up"] for n in ("server", "nat", "lan")),
        ["ip", "-n", net.ns("server"), "link", "set", f"{wan}0", "up"],
        ["ip", "-n", net.ns("nat"), "link", "set", f"{wan}1", "up"],
        ["ip", "-n", net.ns("nat"), "link", "set", f"{lan}0", "up"],
        ["ip", "-n", net.ns("lan"), "link", "set", f"{lan}1", "up"],
        ["ip", "-n", net.ns("lan"), "route", "add", "default", "via", "10.0.0.1"],
        [*net.run_in("nat"), "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        *(
            [
                *net.run_in("nat"),
                *f"iptables -t nat -A POSTROUTING -o {wan}1 -p {protocol}".split(),
                *f"-j MASQUERADE --to-ports {NAT_PORTS}".split(),
            ]
            for protocol in ("udp", "tcp")
        ),
    ]
    # `ip netns exec` mounts /etc/netns/<name>/hosts over /etc/hosts: the lan's names
    hosts = Path("/etc/netns") / net.ns("lan")
    try:
        hosts.mkdir(parents=True)
        (hosts / "hosts").write_text(f"127.0.0.1 localhost\n{net.server_ip} {net.server_name}\n")
        for step in steps:
            subprocess.run(step, check=True, capture_output=True, timeout=20)
        yield net
    finally:
        for name in ("server", "nat", "lan"):  # their veths go with them
            subprocess.run(["ip", "netns", "del", net.ns(name)], capture_output=True, timeout=20)
        for veth in (f"{wan}0", f"{lan}0"):  # left here only when a step failed
            subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=20)
        shutil.rmtree(hosts, ignore_errors=True)

"""Every environment variable a sipgrid process reads: its name, type, default and check,
in one typed object.

A service calls ``Settings.load()`` once as it starts, so a bad value stops it with one
line naming the variable (``environment: field BAN_FAILURES: ...``); the pieces it builds
take what they need from that object. An empty variable counts as unset. Routr's names
are accepted where Routr has them (Connect's ``API_ADDR``, the ``NATS_PUBLISHER_*``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from sipgrid.config import ConfigError, check_networks

if TYPE_CHECKING:
    from .edgeport.workers import WorkerPlace

DIGEST_ALGORITHMS = ("SHA-256", "MD5", "SHA-512-256")
# What challenges offer unless DIGEST_ALGORITHMS or the domain says otherwise. (sipp 3.6.1
# answers the first challenge only and knows only MD5: SHA-256 first would lock it out.)
DEFAULT_DIGEST_ALGORITHMS = ("MD5",)


def _csv(value: object) -> object:
    """ "a, b,c" as ["a", "b", "c"] (a list is taken as it is)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _host_port(value: str) -> str:
    """``host:port`` (IPv6 in brackets); empty means unset."""
    if value:
        host, colon, port = value.rpartition(":")
        if not colon or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"{value!r} is not host:port")
    return value


Csv = Annotated[list[str], BeforeValidator(_csv)]
Lower = BeforeValidator(_lower)


def _env(name: str, *more: str) -> AliasChoices:
    return AliasChoices(name, *more)


class Settings(BaseModel):
    """What the environment says, for every service (each reads the part it uses)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=False)

    # ---- every process
    log_level: Annotated[Literal["", "debug", "info", "warning", "error", "critical"], Lower] = (
        Field("", validation_alias="LOG_LEVEL")
    )
    log_format: Annotated[Literal["text", "json"], Lower] = Field(
        "text", validation_alias="LOG_FORMAT"
    )
    data_dir: Path = Field(Path("data"), validation_alias="SIPGRID_DATA_DIR")
    service_token: str = Field("", validation_alias="SIPGRID_SERVICE_TOKEN")
    bind_addr: str = Field("", validation_alias="BIND_ADDR")
    metrics_bind_addr: str = Field("", validation_alias="METRICS_BIND_ADDR")
    drain_seconds: float = Field(10.0, ge=0, le=3600, validation_alias="SIPGRID_DRAIN_SECONDS")
    # `sipgrid run` and `sipgrid serve edgeport` as this many processes on one SIP port
    workers: int = Field(1, ge=1, le=64, validation_alias="SIPGRID_WORKERS")
    # set by the supervisor for each of its workers: index/count/fd/ports (workers.py)
    worker: str = Field("", validation_alias="SIPGRID_WORKER")
    # messages to a processor, and calls to Location, on sipgrid's streams
    # (proto/stream.proto) where the server has them; off: one unary call each, Routr's way
    streams: bool = Field(True, validation_alias="SIPGRID_STREAMS")
    # an EdgePort sends a request straight to its processor when its Dispatcher says that
    # it would pass it through untouched (proto/stream.proto, DispatcherRoutes); off, or
    # SIPGRID_STREAMS off: every message through the Dispatcher, Routr's way
    direct_routes: bool = Field(True, validation_alias="SIPGRID_DIRECT_ROUTES")
    # a server's streams offer their calls on a plain TCP connection beside gRPC, and a
    # client takes the offer (sipgrid/services/frames.py); off: the gRPC streams alone
    frames: bool = Field(True, validation_alias="SIPGRID_FRAMES")
    # where a server's frames listen; unset: the gRPC address's host, a port the system picks
    frames_bind_addr: str = Field("", validation_alias="FRAMES_BIND_ADDR")
    database_url: str = Field("", validation_alias="DATABASE_URL")
    redis_url: str = Field("", validation_alias="REDIS_URL")
    nats_url: str = Field("", validation_alias="NATS_URL")
    nats_publisher_enabled: bool = Field(False, validation_alias="NATS_PUBLISHER_ENABLED")
    nats_publisher_url: str = Field("nats://localhost:4222", validation_alias="NATS_PUBLISHER_URL")
    nats_publisher_subject: str = Field("routr", validation_alias="NATS_PUBLISHER_SUBJECT")

    # ---- EdgePort (over what edgeport.yaml says)
    external_addrs: Csv = Field([], validation_alias="EXTERNAL_ADDRS")
    localnets: Csv = Field([], validation_alias="LOCALNETS")
    processor_addr: str = Field("", validation_alias="PROCESSOR_ADDR")
    http_bind_addr: str = Field("", validation_alias="HTTP_BIND_ADDR")
    dns_servers: str = Field("", validation_alias="DNS_SERVERS")
    phone_page: Annotated[Literal["on", "off"], Lower] = Field(
        "off", validation_alias="SIPGRID_PHONE_PAGE"
    )
    web_dir: Path | None = Field(None, validation_alias="SIPGRID_WEB_DIR")

    # ---- Connect
    location_addr: str = Field("localhost:51902", validation_alias="LOCATION_ADDR")
    apiserver_addr: str = Field("", validation_alias=_env("APISERVER_ADDR", "API_ADDR"))
    digest_algorithms: Csv = Field(
        list(DEFAULT_DIGEST_ALGORITHMS), validation_alias="DIGEST_ALGORITHMS"
    )
    nonce_key: str = Field("", validation_alias="SIPGRID_NONCE_KEY")
    ban_failures: int = Field(10, ge=0, validation_alias="BAN_FAILURES")  # 0: off
    ban_window: float = Field(60.0, gt=0, validation_alias="BAN_WINDOW")
    ban_seconds: float = Field(600.0, ge=0, validation_alias="BAN_SECONDS")
    peer_probe_interval: float = Field(30.0, gt=0, validation_alias="SIPGRID_PEER_PROBE_INTERVAL")
    probe_bind_addr: str = Field("0.0.0.0:0", validation_alias="PROBE_BIND_ADDR")
    verifier_options: str = Field("", validation_alias="CONNECT_VERIFIER_OPTIONS")
    verifier_public_key_path: str = Field("", validation_alias="CONNECT_VERIFIER_PUBLIC_KEY_PATH")
    verifier_addr: str = Field("", validation_alias="CONNECT_VERIFIER_ADDR")

    # ---- RTPRelay (and the all-in-one's media relay)
    rtpengine_host: str = Field("", validation_alias="RTPENGINE_HOST")
    rtpengine_port: int = Field(22222, gt=0, lt=65536, validation_alias="RTPENGINE_PORT")

    # ---- Location
    location_write: Annotated[Literal["behind", "through"], Lower] = Field(
        "behind", validation_alias="LOCATION_WRITE"
    )
    location_bind_addr: str = Field("127.0.0.1:51902", validation_alias="LOCATION_BIND_ADDR")

    # ---- APIServer
    api_username: str = Field("", validation_alias="API_USERNAME")
    api_password: str = Field("", validation_alias="API_PASSWORD")
    internal_bind_addr: str = Field("127.0.0.1:51907", validation_alias="INTERNAL_BIND_ADDR")
    external_bind_addr: str = Field("0.0.0.0:51908", validation_alias="EXTERNAL_BIND_ADDR")
    tls_cert: str = Field("", validation_alias="TLS_CERT")
    tls_key: str = Field("", validation_alias="TLS_KEY")
    tls_client_ca: str = Field("", validation_alias="TLS_CLIENT_CA")
    secret_key: str = Field("", validation_alias="SIPGRID_SECRET_KEY")

    # ---- Registry
    contact_addr: str = Field("", validation_alias="CONTACT_ADDR")
    requester_addr: str = Field("localhost:51909", validation_alias="REQUESTER_ADDR")
    registry_backoff: float = Field(5.0, gt=0, validation_alias="SIPGRID_REGISTRY_BACKOFF")

    # ---- Requester
    requester_ca_file: str = Field("", validation_alias="REQUESTER_CA_FILE")
    requester_cert_file: str = Field("", validation_alias="REQUESTER_CERT_FILE")
    requester_key_file: str = Field("", validation_alias="REQUESTER_KEY_FILE")

    @field_validator(
        "metrics_bind_addr",
        "bind_addr",
        "http_bind_addr",
        "processor_addr",
        "location_addr",
        "apiserver_addr",
        "probe_bind_addr",
        "location_bind_addr",
        "internal_bind_addr",
        "external_bind_addr",
        "contact_addr",
        "requester_addr",
        "verifier_addr",
        "frames_bind_addr",
    )
    @classmethod
    def _addresses(cls, value: str) -> str:
        return _host_port(value.strip())

    @field_validator("worker")
    @classmethod
    def _worker(cls, value: str) -> str:
        from .edgeport.workers import WorkerPlace

        WorkerPlace.parse(value)  # ValueError when it is not index/count/fd/ports
        return value

    @field_validator("localnets")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        return check_networks(values)

    @field_validator("digest_algorithms")
    @classmethod
    def _algorithms(cls, values: list[str]) -> list[str]:
        names = [v.upper() for v in values]
        unknown = [n for n in names if n not in DIGEST_ALGORITHMS]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not one of {', '.join(DIGEST_ALGORITHMS)}")
        return names or list(DEFAULT_DIGEST_ALGORITHMS)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings in ``env`` (the process environment by default); ConfigError
        naming the variable when one is wrong."""
        given = os.environ if env is None else env
        try:
            return cls.model_validate({k: v for k, v in given.items() if v != ""})
        except ValidationError as error:
            first = error.errors()[0]
            name = ".".join(str(p) for p in first["loc"])
            problem = first["msg"].removeprefix("Value error, ")
            value = given.get(name.split(".")[0], "")
            raise ConfigError(f"environment: field {name}: {problem} (it is {value!r})") from None

    def worker_place(self) -> WorkerPlace | None:
        """Which of the supervisor's workers this process is (SIPGRID_WORKER); None: not one."""
        from .edgeport.workers import WorkerPlace

        return WorkerPlace.parse(self.worker)

    def nats(self) -> str:
        """Where events go: NATS_URL, else Routr's NATS_PUBLISHER_URL when enabled."""
        if self.nats_url:
            return self.nats_url
        return self.nats_publisher_url if self.nats_publisher_enabled else ""


# Every default in one place: the modules' own defaults (a Guard, a PeerProber, a Registry
# made without settings, in tests) are these.
DEFAULTS = Settings.load({})

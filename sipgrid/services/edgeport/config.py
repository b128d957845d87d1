"""The EdgePort configuration, in Routr's format (kind: EdgePort), with Routr's env overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sipgrid.config import check_networks, load
from sipgrid.services.settings import Settings

from .core import MAX_PROCESSOR_WAIT

DEFAULT_METHODS = ["REGISTER", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE", "INFO", "UPDATE", "PRACK", "REFER", "NOTIFY", "SUBSCRIBE"]  # fmt: skip


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class TransportSpec(_Model):
    protocol: Literal["udp", "tcp", "tls", "ws", "wss"]
    port: int = Field(ge=0, le=65535)  # 0: a free port picked at start (tests)
    bind_addr: str | None = Field(None, alias="bindAddr")


class ProcessorSpec(_Model):
    addr: str = Field(min_length=1)


class ClientSecurity(_Model):
    """Routr's ``securityContext.client``: whether TLS clients must show a certificate."""

    protocols: list[str] = []
    # JAIN SIP's names: Enabled (required), Want (asked for), Disabled and DisabledAll (not)
    auth_type: Literal["Default", "Enabled", "Want", "Disabled", "DisabledAll"] = Field(
        "Disabled", alias="authType"
    )


class SecurityContext(_Model):
    """TLS and WSS certificates: PEM files (certFile, keyFile, caFile), or Routr's
    PKCS#12 key store (keyStore, keyStorePassword, keyStoreType: pkcs12, trustStore).
    With neither, a self-signed certificate is made in the data directory at first start."""

    cert_file: str | None = Field(None, alias="certFile")
    key_file: str | None = Field(None, alias="keyFile")
    ca_file: str | None = Field(None, alias="caFile")
    key_store: str | None = Field(None, alias="keyStore")
    key_store_password: str = Field("", alias="keyStorePassword")
    key_store_type: str = Field("pkcs12", alias="keyStoreType")
    trust_store: str | None = Field(None, alias="trustStore")
    trust_store_password: str = Field("", alias="trustStorePassword")
    trust_store_type: str = Field("pkcs12", alias="trustStoreType")
    client: ClientSecurity = ClientSecurity()
    # outbound TLS checks the next hop's certificate against caFile/trustStore when one is set
    verify_server: bool | None = Field(None, alias="verifyServer")

    @field_validator("key_store_type", "trust_store_type")
    @classmethod
    def _pkcs12(cls, value: str) -> str:
        if value.lower() not in ("pkcs12", "p12"):
            raise ValueError(
                f"{value} is not supported: convert it to PKCS#12 (keytool -importkeystore "
                "-srckeystore FILE -destkeystore FILE.p12 -deststoretype pkcs12)"
            )
        return "pkcs12"


class Limits(_Model):
    """Protection against floods (sipgrid's own; Routr has none). 0 turns a limit off."""

    # per source address: requests per second (a token bucket of that size); above it the
    # source gets one 503 with Retry-After per second, and everything else is dropped
    requests_per_second: int = Field(0, alias="requestsPerSecond", ge=0)
    # server transactions waiting for their answer; above it new requests get 503 with
    # Retry-After. Answered non-INVITE ones lingering for retransmissions (Timer J) count
    # apart, as many at most: over it the oldest end early
    max_transactions: int = Field(50_000, alias="maxTransactions", ge=0)
    # seconds: when a queue waits for the processor (ten requests or more) and its oldest
    # has waited this long, the processor is behind, and new requests (not those of a
    # dialog, which may end a call, nor those with credentials, which answer a challenge,
    # until twice this long) get 503 with Retry-After at once, instead of waiting in a
    # queue their senders retransmit into (core.MAX_PROCESSOR_WAIT: T1, 0.5 s)
    max_processor_wait: float = Field(MAX_PROCESSOR_WAIT, alias="maxProcessorWait", ge=0)
    # TCP, TLS and WebSocket connections per source address
    max_connections_per_source: int = Field(0, alias="maxConnectionsPerSource", ge=0)
    # seconds a connection may stay open without bringing a complete SIP message
    idle_timeout: float = Field(0, alias="idleTimeout", ge=0)


class HttpSpec(_Model):
    """/healthz, /readyz and /metrics (sipgrid's own): off unless bindAddr is set."""

    bind_addr: str | None = Field(None, alias="bindAddr")


class EdgePortSpec(_Model):
    bind_addr: str = Field("0.0.0.0", alias="bindAddr")
    processor: ProcessorSpec
    external_addrs: list[str] = Field([], alias="externalAddrs")
    localnets: list[str] = []
    methods: list[str] = Field(default_factory=lambda: list(DEFAULT_METHODS))
    transport: list[TransportSpec] = Field(min_length=1)
    unknown_method_action: Literal["Discard", "Respond"] = Field(
        "Respond", alias="unknownMethodAction"
    )
    max_message_size: int = Field(65535, alias="maxMessageSize", ge=1500)
    security_context: SecurityContext = Field(SecurityContext(), alias="securityContext")
    limits: Limits = Limits()
    http: HttpSpec = HttpSpec()

    @field_validator("localnets")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        return check_networks(values)


class EdgePortConfig(_Model):
    kind: Literal["EdgePort"]
    api_version: str = Field("v2beta1", alias="apiVersion")
    ref: str = Field(min_length=1)
    metadata: dict[str, object] = {}
    spec: EdgePortSpec


def load_edgeport(path: Path, settings: Settings | None = None) -> EdgePortConfig:
    """Read the file, then apply EXTERNAL_ADDRS, LOCALNETS, PROCESSOR_ADDR and
    HTTP_BIND_ADDR (``settings``: the environment's, by default)."""
    env = settings or Settings.load()
    config = load(EdgePortConfig, path)
    spec = config.spec
    if env.external_addrs:
        spec.external_addrs = list(env.external_addrs)
    if env.localnets:
        spec.localnets = list(env.localnets)
    if env.processor_addr:
        spec.processor.addr = env.processor_addr
    if env.http_bind_addr:
        spec.http.bind_addr = env.http_bind_addr
    spec.methods = [m.upper() for m in spec.methods]
    security = spec.security_context
    for name in ("cert_file", "key_file", "ca_file", "key_store", "trust_store"):
        value = getattr(security, name)
        if value:  # relative to the config file
            setattr(security, name, str((path.parent / value).resolve()))
    return config

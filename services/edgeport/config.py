"""The EdgePort configuration, in Routr's format (kind: EdgePort), with Routr's env overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sipgrid.config import ConfigError, check_networks, load

DEFAULT_METHODS = ["REGISTER", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE", "INFO", "UPDATE", "PRACK", "REFER", "NOTIFY", "SUBSCRIBE"]  # fmt: skip


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class TransportSpec(_Model):
    protocol: Literal["udp", "tcp", "tls", "ws", "wss"]
    port: int = Field(ge=0, le=65535)  # 0: a free port picked at start (tests)
    bind_addr: str | None = Field(None, alias="bindAddr")


class ProcessorSpec(_Model):
    addr: str = Field(min_length=1)


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
    # Routr's TLS settings; accepted and ignored until TLS lands.
    security_context: dict[str, object] | None = Field(None, alias="securityContext")

    @field_validator("localnets")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        return check_networks(values)

    @field_validator("transport")
    @classmethod
    def _supported(cls, values: list[TransportSpec]) -> list[TransportSpec]:
        for t in values:
            if t.protocol not in ("udp", "tcp"):
                raise ValueError(f"protocol {t.protocol} is not supported yet (udp and tcp are)")
        return values


class EdgePortConfig(_Model):
    kind: Literal["EdgePort"]
    api_version: str = Field("v2beta1", alias="apiVersion")
    ref: str = Field(min_length=1)
    metadata: dict[str, object] = {}
    spec: EdgePortSpec


def load_edgeport(path: Path, environ: dict[str, str] | None = None) -> EdgePortConfig:
    """Read the file, then apply EXTERNAL_ADDRS, LOCALNETS and PROCESSOR_ADDR."""
    env = os.environ if environ is None else environ
    config = load(EdgePortConfig, path)
    spec = config.spec
    if env.get("EXTERNAL_ADDRS"):
        spec.external_addrs = [a.strip() for a in env["EXTERNAL_ADDRS"].split(",") if a.strip()]
    if env.get("LOCALNETS"):
        nets = [a.strip() for a in env["LOCALNETS"].split(",") if a.strip()]
        try:
            EdgePortSpec._networks(nets)
        except ValueError as error:
            raise ConfigError(f"LOCALNETS (environment): {error}") from None
        spec.localnets = nets
    if env.get("PROCESSOR_ADDR"):
        spec.processor.addr = env["PROCESSOR_ADDR"]
    spec.methods = [m.upper() for m in spec.methods]
    return config

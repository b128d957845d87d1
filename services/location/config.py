"""The Location configuration (Routr's ``kind: Location``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class CacheSpec(_Model):
    provider: Literal["memory", "redis"] = "memory"
    parameters: dict[str, Any] = {}


class LocationSpec(_Model):
    bind_addr: str = Field("0.0.0.0:51902", alias="bindAddr")
    cache: CacheSpec = CacheSpec()


class LocationConfig(_Model):
    kind: Literal["Location"]
    api_version: str = Field("v2beta1", alias="apiVersion")
    ref: str = "location"
    metadata: dict[str, Any] = {}
    spec: LocationSpec = LocationSpec()

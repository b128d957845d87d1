"""The Location configuration (Routr's ``kind: Location``)."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from sipgrid.config import ConfigError


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


def redis_url(config: LocationConfig | None, override: str, where: str) -> str | None:
    """The Redis to use: ``override`` (REDIS_URL), else ``spec.cache.parameters`` (``url``, or ``host``,
    ``port``, ``db``, ``password``) when the provider is redis; None for memory."""
    if config is None or config.spec.cache.provider != "redis":
        return None
    if override:
        return override
    parameters = config.spec.cache.parameters
    if parameters.get("url"):
        return str(parameters["url"])
    host = parameters.get("host", "localhost")
    try:
        port = int(parameters.get("port", 6379))
        db = int(parameters.get("db", 0))
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}: field spec.cache.parameters: port and db must be numbers"
        ) from None
    password = parameters.get("password")
    auth = f":{quote(str(password), safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{db}"


def open_location(config: LocationConfig | None, override: str, where: str) -> Any:
    """The LocationService the config asks for: memory (one instance) or Redis (shared)."""
    url = redis_url(config, override, where)
    if url is None:
        from .service import MemoryLocation

        return MemoryLocation()
    from .redis_store import RedisLocation

    return RedisLocation.from_url(url)

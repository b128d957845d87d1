"""Loading configuration files: one line naming file, field and problem on any error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration file is missing, unreadable or invalid. str() is one line."""


def read_document(path: Path) -> Any:
    """Parse a YAML or JSON file."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {first}"
        ) from None


def validate(model: type[M], data: Any, where: str) -> M:
    """Validate data against a model; errors name the first faulty field."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise ConfigError(f"{where}: field {field}: {first['msg']}") from None


def load(model: type[M], path: Path) -> M:
    return validate(model, read_document(path), str(path))


def check_networks(values: list[str]) -> list[str]:
    """A pydantic validator body: every value an IP network ("10.0.0.0/8") or address."""
    import ipaddress

    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"not an IP network: {value!r}") from None
    return values

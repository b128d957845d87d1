"""The Message Dispatcher: picks the processor for a message and runs middlewares.

It speaks the Processor contract itself, so an EdgePort cannot tell it from a
processor. Configured as Routr's ``kind: MessageDispatcher``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sipgrid.api.types import (
    META_TARGET_TRANSPORT,
    MessageRequest,
    MessageResponse,
    Processor,
)
from sipgrid.config import load
from sipgrid.sip import Request, Response, make_response, stable_tag

from .matchfunc import MatchFunc, MatchFuncError

log = logging.getLogger("sipgrid.dispatcher")


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class ProcessorSpec(_Model):
    ref: str = Field(min_length=1)
    addr: str = Field(min_length=1)
    methods: list[str] = Field(min_length=1)
    match_func: str = Field("req => true", alias="matchFunc")

    @field_validator("match_func")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            MatchFunc(value)
        except MatchFuncError as error:
            raise ValueError(str(error)) from None
        return value


class MiddlewareSpec(_Model):
    ref: str = Field(min_length=1)
    addr: str = Field(min_length=1)
    post_processor: bool = Field(False, alias="postProcessor")
    # a sipgrid extension: the methods it runs for (requests, and responses by their
    # CSeq method); empty, as in Routr, every method
    methods: list[str] = []


class DispatcherSpec(_Model):
    bind_addr: str = Field("0.0.0.0:51901", alias="bindAddr")
    processors: list[ProcessorSpec] = Field(min_length=1)
    middlewares: list[MiddlewareSpec] = []


class DispatcherConfig(_Model):
    kind: Literal["MessageDispatcher"]
    api_version: str = Field("v2beta1", alias="apiVersion")
    ref: str = "message-dispatcher"
    metadata: dict[str, Any] = {}
    spec: DispatcherSpec


def load_dispatcher(path: Path) -> DispatcherConfig:
    return load(DispatcherConfig, path)


@dataclass(slots=True)
class _Route:
    ref: str
    methods: frozenset[str]
    match: MatchFunc
    processor: Processor
    addr: str


@dataclass(slots=True)
class _Middleware:
    ref: str
    processor: Processor
    methods: frozenset[str] | None  # None: every method

    def runs_for(self, method: str) -> bool:
        return self.methods is None or method in self.methods


def request_view(request: MessageRequest) -> dict[str, Any]:
    """The request as Routr's processors see it in JSON, for matchFunc."""
    view: dict[str, Any] = {
        "ref": request.ref,
        "edgePortRef": request.edge_port_ref,
        "method": request.method,
        "sender": {
            "host": request.sender.host,
            "port": request.sender.port,
            "transport": request.sender.transport.name,
        },
        "metadata": dict(request.metadata),
    }
    message = request.message

    def address(value: Any) -> dict[str, Any]:
        uri = value.sip_uri
        return {
            "address": {
                "uri": {"user": uri.user if uri else None, "host": uri.host if uri else None},
                "displayName": value.display_name,
            },
            "tag": value.tag,
        }

    msg: dict[str, Any] = {
        "from": address(message.from_),
        "to": address(message.to),
        "callId": {"callId": message.call_id},
        "extensions": [{"name": name.strip(), "value": value} for name, value in message.headers()],
    }
    if isinstance(message, Request):
        uri = message.uri
        msg["requestUri"] = {
            "user": getattr(uri, "user", None),
            "host": getattr(uri, "host", None),
            "port": getattr(uri, "port", None),
        }
    else:
        msg["responseType"] = message.status
    view["message"] = msg
    return view


class Dispatcher:
    """Implements Processor: middlewares, then the first matching processor, then post-middlewares."""

    def __init__(self, config: DispatcherConfig, connect: Callable[[str, str], Processor]) -> None:
        """``connect(ref, addr)`` gives the Processor for an address (gRPC or in-process)."""
        spec = config.spec
        self._routes = [
            _Route(
                p.ref,
                frozenset(m.upper() for m in p.methods),
                MatchFunc(p.match_func),
                connect(p.ref, p.addr),
                p.addr,
            )
            for p in spec.processors
        ]

        def middleware(m: MiddlewareSpec) -> _Middleware:
            methods = frozenset(x.upper() for x in m.methods) or None
            return _Middleware(m.ref, connect(m.ref, m.addr), methods)

        self._pre = [middleware(m) for m in spec.middlewares if not m.post_processor]
        self._post = [middleware(m) for m in spec.middlewares if m.post_processor]

    @property
    def has_middlewares(self) -> bool:
        return bool(self._pre or self._post)

    def middlewares_for(self, method: str) -> bool:
        """Whether a middleware runs for a message of ``method`` (a response's: its CSeq
        method)."""
        return any(m.runs_for(method) for m in (*self._pre, *self._post))

    @property
    def handles_responses(self) -> bool:
        """Without middlewares, responses pass through unchanged."""
        return self.has_middlewares

    def direct_route(self, method: str) -> Processor | None:
        """The processor for a method when no matchFunc needs the message and no middleware
        runs: the gRPC servicer then passes the protobuf through untouched."""
        route = self._direct(method)
        return route.processor if route is not None else None

    def untouched_route(self, method: str) -> str | None:
        """The address of the processor a request of ``method`` reaches with nothing in
        between (its direct route), else None: for an EdgePort that follows dialogs."""
        route = self._direct(method)
        return route.addr if route is not None else None

    def direct_addresses(self) -> dict[str, str]:
        """Method -> the address of its direct route's processor, for every method a
        processor takes (what an EdgePort may send there without coming here)."""
        found = {}
        for method in sorted({m for route in self._routes for m in route.methods}):
            route = self._direct(method)
            if route is not None:
                found[method] = route.addr
        return found

    def _direct(self, method: str) -> _Route | None:
        if self.middlewares_for(method):
            return None
        for candidate in self._routes:
            if method in candidate.methods:
                return candidate if candidate.match.always else None
        return None

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        message = request.message
        if isinstance(message, Response) and not self.middlewares_for(request.method):
            return MessageResponse(message)  # nothing on this path changes responses
        view: Mapping[str, Any] | None = None
        route = None
        for candidate in self._routes:
            if request.method not in candidate.methods:
                continue
            if not candidate.match.always and view is None:
                view = request_view(request)
            if candidate.match(dict(view) if view is not None else {}):
                route = candidate
                break
        if route is None:
            if isinstance(message, Response):
                return MessageResponse(message)
            return MessageResponse(
                make_response(
                    message,
                    501,
                    "Not Implemented (No Processor For This Request)",
                    to_tag=None if message.to.tag else stable_tag(message),
                )
            )
        for middleware in self._pre:  # in order; an answer ends the chain (Routr's way)
            if not middleware.runs_for(request.method):
                continue
            answered = await _run_middleware(middleware.ref, middleware.processor, request)
            if isinstance(message, Request) and isinstance(answered.message, Response):
                return answered
            request.message = answered.message
        result = await route.processor.process_message(request)
        target = _target_transport(result)
        if target is not None:  # where the request goes, for media relays and such
            request.metadata = {**request.metadata, META_TARGET_TRANSPORT: target}
        for middleware in self._post:
            if not middleware.runs_for(request.method):
                continue
            request.message = result.message
            answered = await _run_middleware(middleware.ref, middleware.processor, request)
            result = dataclasses.replace(result, message=answered.message)
        return result


async def _run_middleware(
    ref: str, middleware: Processor, request: MessageRequest
) -> MessageResponse:
    """A middleware's answer; its failure becomes a 500 for a request (a response goes on
    unchanged), with its name in the log."""
    try:
        return await middleware.process_message(request)
    except Exception as error:
        log.error("middleware %s failed: %s", ref, error)
        message = request.message
        if isinstance(message, Request):
            return MessageResponse(
                make_response(
                    message,
                    500,
                    f"Server Internal Error ({ref} Failed)",
                    to_tag=None if message.to.tag else stable_tag(message),
                )
            )
        return MessageResponse(message)


def _target_transport(result: MessageResponse) -> str | None:
    """The transport a routed request leaves on, when the processor named it."""
    if not isinstance(result.message, Request):
        return None
    for where in (result.target_flow, result.destination):
        if where is not None:
            return where.transport.name
    if result.forks:
        first = result.forks[0]
        where = first.target_flow or first.destination
        return where.transport.name if where is not None else None
    return None

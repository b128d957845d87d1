"""Options every sipgrid gRPC server shares."""

from __future__ import annotations

import hmac
from typing import Any

import grpc

from sipgrid.services.settings import Settings

# gRPC sets SO_REUSEPORT by default, so a second server on a taken port starts without an
# error and silently shares it. A service must own its port: a clash fails at start.
SERVER_OPTIONS = [("grpc.so_reuseport", 0)]
# A part that was down is tried again within a second of coming back, not after gRPC's
# default backoff (1 s doubling to 120 s): the first calls after it returns must work.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def bind_grpc(
    server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None = None
) -> int:
    """Bind a port or raise OSError naming the address (in use, or not an address of ours)."""
    try:
        port = (
            server.add_secure_port(address, credentials)
            if credentials is not None
            else server.add_insecure_port(address)
        )
    except RuntimeError as error:
        raise OSError(f"cannot bind gRPC to {address} (address already in use?): {error}") from None
    if port == 0:
        raise OSError(f"cannot bind gRPC to {address} (address already in use?)")
    return port


# The internal ports (Location, Dispatcher, Connect, the APIServer's internal port) trust
# whoever reaches them. With SIPGRID_SERVICE_TOKEN set, every process of the wiring sends
# it and every internal server refuses a call without it (the health check excepted).
TOKEN_HEADER = "x-sipgrid-token"


def service_token() -> str:
    return Settings.load().service_token


def token_metadata() -> tuple[tuple[str, str], ...]:
    token = service_token()
    return ((TOKEN_HEADER, token),) if token else ()


class TokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        if handler_call_details.method.startswith("/grpc.health.v1.Health/"):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        offered = str(metadata.get(TOKEN_HEADER, "")).encode()
        handler = await continuation(handler_call_details)
        if hmac.compare_digest(offered, self._token):
            return handler
        return unauthenticated(
            f"{TOKEN_HEADER}: the service token is required",
            streaming=handler is not None and handler.request_streaming,
        )


def unauthenticated(reason: str, streaming: bool = False) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler that refuses the call with UNAUTHENTICATED and ``reason``; ``streaming``
    for a method whose requests are a stream (sipgrid's ProcessMessages)."""

    async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    if streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


def internal_interceptors() -> list[grpc.aio.ServerInterceptor]:
    token = service_token()
    return [TokenInterceptor(token)] if token else []


class TokenClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the service token to every call of a channel to an internal port."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        details = client_call_details._replace(
            metadata=grpc.aio.Metadata(*(client_call_details.metadata or ()), *self._metadata)
        )
        return await continuation(details, request)


def internal_channel(addr: str) -> grpc.aio.Channel:
    """A channel to an internal port, carrying the service token when there is one."""
    metadata = token_metadata()
    interceptors = [TokenClientInterceptor(metadata)] if metadata else None
    return grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS, interceptors=interceptors)

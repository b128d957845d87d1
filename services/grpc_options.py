"""Options every sipgrid gRPC server shares."""

from __future__ import annotations

import grpc

# gRPC sets SO_REUSEPORT by default, so a second server on a taken port starts without an
# error and silently shares it. A service must own its port: a clash fails at start.
SERVER_OPTIONS = [("grpc.so_reuseport", 0)]


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

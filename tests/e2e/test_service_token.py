"""Internal ports closed to strangers: with SIPGRID_SERVICE_TOKEN set, the distributed
wiring works (every process sends the token, on the gRPC streams and on the frames
beside them), and a call to Location or the internal Connect API without it is refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from sipgrid.pb import domains_pb2, domains_pb2_grpc, location_pb2, location_pb2_grpc

from . import scenarios
from .harness import distributed, free_port, registered_callee, run_sipp, wait_exit


def established(port: int) -> int:
    """TCP connections established to 127.0.0.1:``port`` (from /proc/net/tcp)."""
    found = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if local == f"0100007F:{port:04X}" and state == "01":
            found += 1
    return found


def test_the_wiring_works_with_a_token_and_strangers_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIPGRID_SERVICE_TOKEN", "a-long-shared-secret")
    frames = {name: free_port() for name in ("connect", "location")}
    env = {name: {"FRAMES_BIND_ADDR": f"127.0.0.1:{port}"} for name, port in frames.items()}
    with (
        distributed(tmp_path / "sipgrid", service_env=env) as sipgrid,
        registered_callee(tmp_path, sipgrid) as uas,
    ):
        call = run_sipp(tmp_path, "call", scenarios.call("caller"), server_port=sipgrid.port)
        assert call.ok, call.output + sipgrid.log_text()[-3000:]
        assert wait_exit(uas) == 0
        # the EdgePort's calls to Connect and Connect's to Location went on frames
        # (the hello gave the token), not on the gRPC streams
        assert established(frames["connect"]) >= 1, sipgrid.log_text()[-3000:]
        assert established(frames["location"]) >= 1, sipgrid.log_text()[-3000:]
        location_port = int(sipgrid.steps["location"][0][-1].rsplit(":", 1)[1])
        with grpc.insecure_channel(f"127.0.0.1:{location_port}") as channel:
            stub = location_pb2_grpc.LocationStub(channel)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListRoutes(location_pb2.ListRoutesRequest(), timeout=5)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
            token = [("x-sipgrid-token", "a-long-shared-secret")]
            listed = stub.ListRoutes(location_pb2.ListRoutesRequest(), timeout=5, metadata=token)
            assert [b.aor for b in listed.bindings] == ["sip:1002@sip.local"]
        with grpc.insecure_channel(f"127.0.0.1:{sipgrid.api_port}") as channel:
            domains = domains_pb2_grpc.DomainsStub(channel)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.RpcError) as refused:
                domains.List(domains_pb2.ListDomainRequest(page_size=5), timeout=5)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED

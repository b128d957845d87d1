"""sipgrid.processor: the example blocklist (examples/blocklist.py), a middleware written
in a few lines of Python, before Connect in both wirings, with sipp as the client."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sipgrid.api.types import MessageRequest, NetInterface
from sipgrid.processor import Message, Processor
from sipgrid.sip import Request, Response, parse
from tests.sip.helpers import INVITE

from . import scenarios
from .harness import ROOT, _dispatcher, all_in_one, background, distributed, free_port, run_sipp


@contextlib.contextmanager
def blocklist(directory: Path, blocked: str) -> Iterator[str]:
    """examples/blocklist.py on a free port; yields its address."""
    address = f"127.0.0.1:{free_port()}"
    with background(
        [sys.executable, str(ROOT / "examples" / "blocklist.py"), address],
        directory / "blocklist.log",
        "sipgrid: ready",
        env={"BLOCKLIST": blocked, "PATH": "/usr/bin:/bin"},
    ):
        yield address


@pytest.mark.parametrize("wiring", ["all_in_one", "distributed"])
def test_the_example_blocklist_refuses_blocked_callers_and_lets_others_through(
    tmp_path: Path, wiring: str
) -> None:
    with blocklist(tmp_path, "1001") as address:

        def add(config: dict[str, Any]) -> None:
            config["spec"]["middlewares"] = [{"ref": "blocklist", "addr": address}]

        if wiring == "all_in_one":
            config = _dispatcher(0, 51904)  # Connect in process, the blocklist over gRPC
            add(config)
            running = all_in_one(tmp_path / "sipgrid", dispatcher=config)
        else:
            running = distributed(tmp_path / "sipgrid", edit_dispatcher=add)
        with running as sipgrid:
            blocked = run_sipp(
                tmp_path,
                "from-1001",
                scenarios.message(403, challenged=False),
                server_port=sipgrid.port,
                user="1001",
            )
            # the blocklist answered at once: no 407 from Connect first
            assert blocked.ok, blocked.output + sipgrid.log_text()[-3000:]
            passed = run_sipp(
                tmp_path,
                "from-1002",
                scenarios.message(480),  # Connect's challenge, then nobody registered as 1001
                server_port=sipgrid.port,
                user="1002",
                keys={"callee": "1001"},
            )
            assert passed.ok, passed.output + sipgrid.log_text()[-3000:]


def test_handlers_reply_redirect_forward_and_fail_cleanly() -> None:
    def request() -> MessageRequest:
        message = parse(INVITE)
        return MessageRequest("c", "ep", "INVITE", NetInterface("127.0.0.1", 1), [], message)

    @Processor
    async def voicemail(msg: Message) -> Any:
        if msg.header("X-Busy"):
            return msg.redirect("sip:vm@media.example", status=302)
        if msg.user == "bob":
            return msg.forward(add_headers={"X-Seen": "1"}, remove_headers=("Subject",))
        return None

    async def scenario() -> None:
        forwarded = (await voicemail.process_message(request())).message
        assert isinstance(forwarded, Request) and forwarded.get("X-Seen") == "1"
        busy = request()
        busy.message.add("X-Busy", "yes")
        moved = (await voicemail.process_message(busy)).message
        assert isinstance(moved, Response) and moved.status == 302 and moved.to.tag
        assert moved.get("Contact") == "<sip:vm@media.example>"

        @Processor
        def broken(msg: Message) -> None:
            raise RuntimeError("bug")

        failed = (await broken.process_message(request())).message
        assert isinstance(failed, Response) and failed.status == 500
        assert failed.reason == "Server Internal Error (broken)"

    asyncio.run(scenario())

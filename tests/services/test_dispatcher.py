from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sipgrid.api.types import MessageRequest, MessageResponse, NetInterface, Transport
from sipgrid.services.dispatcher.dispatcher import Dispatcher, DispatcherConfig, request_view
from sipgrid.services.dispatcher.matchfunc import MatchFunc, MatchFuncError
from sipgrid.sip import Request, Response, make_response, parse
from tests.sip.helpers import INVITE


def view(method: str = "INVITE", user_agent: str = "Zoiper 5") -> dict[str, Any]:
    message = parse(
        INVITE.replace(
            b"Max-Forwards: 70", f"Max-Forwards: 70\r\nUser-Agent: {user_agent}".encode()
        )
        .replace(b"INVITE sip", f"{method} sip".encode())
        .replace(b"314159 INVITE", f"314159 {method}".encode())
    )
    request = MessageRequest(
        "c", "ep", method, NetInterface("127.0.0.1", 5060, Transport.UDP), [], message
    )
    return request_view(request)


@pytest.mark.parametrize(
    ("source", "method", "expected"),
    [
        ("req => true", "INVITE", True),
        ("req => req.method === 'MESSAGE'", "MESSAGE", True),
        ('req => req.method === "MESSAGE"', "INVITE", False),
        ("req => req.method !== 'MESSAGE' && req.sender.port == 5060", "INVITE", True),
        ("req => req.message.from.address.uri.user === 'alice'", "INVITE", True),
        ("req => req.message.requestUri.host.endsWith('example.com') || false", "INVITE", True),
        ("r => !(r.method === 'INVITE')", "INVITE", False),
        (
            'req => req.message.extensions.find(e => e.name === "User-Agent" && e.value.includes("Zoiper"))',
            "INVITE",
            True,
        ),
        (
            'req => req.message.extensions.some(e => e.value.toLowerCase().startsWith("linphone"))',
            "INVITE",
            False,
        ),
    ],
)
def test_match_functions(source: str, method: str, expected: bool) -> None:
    assert MatchFunc(source)(view(method)) is expected


@pytest.mark.parametrize(
    "source",
    [
        "req => eval('1')",
        "req => req.method = 'x'",
        "true",
        "req => process.exit()",
        "req => req.method === ",
    ],
)
def test_unsafe_or_broken_functions_are_refused(source: str) -> None:
    with pytest.raises(MatchFuncError):
        MatchFunc(source)


class Echo:
    handles_responses = True

    def __init__(self, name: str) -> None:
        self.name = name

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        return MessageResponse(request.message, {"by": self.name})


def test_dispatcher_picks_the_first_matching_processor_or_answers_501() -> None:
    config = DispatcherConfig.model_validate(
        {
            "kind": "MessageDispatcher",
            "spec": {
                "processors": [
                    {
                        "ref": "im",
                        "addr": "im:1",
                        "methods": ["MESSAGE"],
                        "matchFunc": "req => req.method === 'MESSAGE'",
                    },
                    {
                        "ref": "connect",
                        "addr": "connect:51904",
                        "methods": ["INVITE"],
                        "matchFunc": "req => true",
                    },
                ]
            },
        }
    )
    dispatcher = Dispatcher(config, lambda ref, addr: Echo(ref))

    async def scenario() -> None:
        for method, expected in [("MESSAGE", "im"), ("INVITE", "connect")]:
            data = INVITE.replace(b"INVITE sip", f"{method} sip".encode()).replace(
                b"314159 INVITE", f"314159 {method}".encode()
            )
            message = parse(data)
            result = await dispatcher.process_message(
                MessageRequest("c", "ep", method, NetInterface("127.0.0.1", 1), [], message)
            )
            assert result.metadata["by"] == expected
        bye = parse(
            INVITE.replace(b"INVITE sip", b"BYE sip").replace(b"314159 INVITE", b"314159 BYE")
        )
        result = await dispatcher.process_message(
            MessageRequest("c", "ep", "BYE", NetInterface("127.0.0.1", 1), [], bye)
        )
        assert getattr(result.message, "status", None) == 501

    asyncio.run(scenario())


class Gate:
    """A middleware in the spirit of Routr's simpleauth: 401 unless the request says the word."""

    handles_responses = True

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        message = request.message
        assert isinstance(message, Request)
        self.seen.append(message.method)
        if message.get("X-Word") != "please":
            return MessageResponse(make_response(message, 401, "Unauthorized"))
        message.add("X-Gate", "passed")
        return MessageResponse(message)


class Broken:
    handles_responses = True

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        raise RuntimeError("out of order")


def test_middlewares_run_in_order_an_answer_ends_the_chain_a_failure_is_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def dispatcher(middlewares: list[dict[str, object]], parts: dict[str, Any]) -> Dispatcher:
        config = DispatcherConfig.model_validate(
            {
                "kind": "MessageDispatcher",
                "spec": {
                    "processors": [{"ref": "connect", "addr": "c:1", "methods": ["INVITE"]}],
                    "middlewares": middlewares,
                },
            }
        )
        return Dispatcher(config, lambda ref, addr: parts[ref])

    def invite(word: str = "") -> MessageRequest:
        data = (
            INVITE
            if not word
            else INVITE.replace(b"\r\n\r\n", f"\r\nX-Word: {word}\r\n\r\n".encode(), 1)
        )
        return MessageRequest("c", "ep", "INVITE", NetInterface("127.0.0.1", 1), [], parse(data))

    async def scenario() -> None:
        gate, connect = Gate(), Echo("connect")
        chain = dispatcher([{"ref": "gate", "addr": "g:1"}], {"gate": gate, "connect": connect})
        refused = await chain.process_message(invite())
        assert isinstance(refused.message, Response) and refused.message.status == 401
        assert "by" not in refused.metadata  # the processor never saw it
        passed = await chain.process_message(invite("please"))
        assert passed.metadata["by"] == "connect" and isinstance(passed.message, Request)
        assert passed.message.get("X-Gate") == "passed"
        broken = dispatcher(
            [{"ref": "broken-mw", "addr": "b:1"}], {"broken-mw": Broken(), "connect": connect}
        )
        failed = await broken.process_message(invite("please"))
        assert isinstance(failed.message, Response) and failed.message.status == 500
        assert failed.message.reason == "Server Internal Error (broken-mw Failed)"
        after = dispatcher(
            [{"ref": "broken-mw", "addr": "b:1", "postProcessor": True}],
            {"broken-mw": Broken(), "connect": connect},
        )
        failed_after = await after.process_message(invite("please"))
        assert isinstance(failed_after.message, Response) and failed_after.message.status == 500

    asyncio.run(scenario())
    assert "middleware broken-mw failed: out of order" in caplog.text


class Noting:
    """A post-processor middleware that notes what it sees and passes it on."""

    handles_responses = True

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        message = request.message
        self.seen.append(message.method if isinstance(message, Request) else str(message.status))
        return MessageResponse(message)


def test_a_middleware_with_methods_runs_for_those_alone_and_the_rest_can_go_direct() -> None:
    """sipgrid's extension (as the RTP relay in deploy/config wants: INVITE, ACK, BYE,
    CANCEL and their answers): a middleware with ``methods`` sees requests and responses
    of those methods only; the others have direct routes, and their responses pass."""
    config = DispatcherConfig.model_validate(
        {
            "kind": "MessageDispatcher",
            "spec": {
                "processors": [
                    {"ref": "connect", "addr": "c:1", "methods": ["INVITE", "REGISTER"]}
                ],
                "middlewares": [
                    {"ref": "relay", "addr": "r:1", "postProcessor": True, "methods": ["invite"]}
                ],
            },
        }
    )
    relay, connect = Noting(), Echo("connect")
    parts: dict[str, Any] = {"relay": relay, "connect": connect}
    dispatcher = Dispatcher(config, lambda ref, addr: parts[ref])
    assert dispatcher.direct_addresses() == {"REGISTER": "c:1"}
    assert dispatcher.handles_responses and dispatcher.middlewares_for("INVITE")
    assert not dispatcher.middlewares_for("REGISTER")

    def request(method: str) -> MessageRequest:
        data = INVITE.replace(b"INVITE sip", f"{method} sip".encode()).replace(
            b"314159 INVITE", f"314159 {method}".encode()
        )
        return MessageRequest("c", "ep", method, NetInterface("127.0.0.1", 1), [], parse(data))

    async def scenario() -> None:
        for method in ("INVITE", "REGISTER"):
            result = await dispatcher.process_message(request(method))
            assert result.metadata["by"] == "connect"
            answer = request(method)
            assert isinstance(answer.message, Request)
            answer.message = make_response(answer.message, 200, to_tag="t")
            await dispatcher.process_message(answer)
        assert relay.seen == ["INVITE", "200"]

    asyncio.run(scenario())

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.dispatcher.dispatcher import Dispatcher, DispatcherConfig, request_view
from services.dispatcher.matchfunc import MatchFunc, MatchFuncError
from sipgrid.api.types import MessageRequest, MessageResponse, NetInterface, Transport
from sipgrid.sip import parse
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

"""Write a processor or middleware in Python, served with Routr's contract.

A handler gets a typed view of each message and says what to do with it::

    from sipgrid.processor import Processor

    blocked = {"1666"}

    @Processor
    def blocklist(msg):
        if msg.from_user in blocked:
            return msg.reply(403, "Forbidden (Blocked)")
        return None  # on, unchanged (or msg.forward(add_headers=...))

    blocklist.run("0.0.0.0:51905")  # gRPC, Routr's Processor service and the health check

Put its address in the Dispatcher's config: as a middleware (before Connect: answering
ends the chain, Routr's way) or as a processor with a ``matchFunc``. Handlers may be
plain functions or coroutines; an exception in one gives the caller 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sipgrid.api.types import MessageRequest, MessageResponse, NetInterface
from sipgrid.sip import Request, Response, SipUri, make_response, parse_uri, stable_tag

log = logging.getLogger("sipgrid.processor")


@dataclass(frozen=True)
class Decision:
    """What a handler decided: the message to send back to the Dispatcher."""

    message: Request | Response


class Message:
    """A read-mostly view of the message a processor is given."""

    def __init__(self, request: MessageRequest) -> None:
        self._request = request
        self.raw = request.message  # the sipgrid.sip message, for anything not here

    @property
    def is_request(self) -> bool:
        return isinstance(self.raw, Request)

    @property
    def method(self) -> str:
        return self._request.method

    @property
    def status(self) -> int | None:
        return self.raw.status if isinstance(self.raw, Response) else None

    @property
    def uri(self) -> str:
        return str(self.raw.uri) if isinstance(self.raw, Request) else ""

    @property
    def user(self) -> str:
        """The Request-URI's user: who is called."""
        uri = self.raw.uri if isinstance(self.raw, Request) else None
        return (uri.user or "") if isinstance(uri, SipUri) else ""

    @property
    def from_user(self) -> str:
        uri = self.raw.from_.sip_uri
        return (uri.user or "") if uri is not None else ""

    @property
    def to_user(self) -> str:
        uri = self.raw.to.sip_uri
        return (uri.user or "") if uri is not None else ""

    @property
    def call_id(self) -> str:
        return self.raw.call_id

    @property
    def body(self) -> bytes:
        return self.raw.body

    @property
    def sender(self) -> NetInterface:
        """Where the message came from (host, port, transport)."""
        return self._request.sender

    @property
    def routes(self) -> list[str]:
        """The Route header values, top first."""
        return [str(r) for r in self.raw.get_all("Route")]

    def header(self, name: str) -> str | None:
        return self.raw.get(name)

    def headers(self, name: str) -> list[str]:
        return [str(v) for v in self.raw.get_all(name)]

    # -- what to do

    def reply(
        self, status: int, reason: str | None = None, headers: dict[str, str] | None = None
    ) -> Decision:
        """Answer the request here (a middleware's answer ends the chain)."""
        request = self._request_only("reply")
        tag = None if request.to.tag or status == 100 else stable_tag(request)
        return Decision(
            make_response(
                request, status, reason, to_tag=tag, headers=list((headers or {}).items())
            )
        )

    def redirect(self, *contacts: str, status: int = 302) -> Decision:
        """Send the caller elsewhere (3xx with Contact: voicemail, another number)."""
        if not 300 <= status < 400 or not contacts:
            raise ValueError("a redirect is a 3xx with at least one Contact")
        request = self._request_only("redirect")
        for contact in contacts:
            parse_uri(contact, what="Contact")  # a bad URI is the handler's bug: say so now
        tag = None if request.to.tag else stable_tag(request)
        response = make_response(request, status, to_tag=tag)
        for contact in contacts:
            response.add("Contact", f"<{contact}>")
        return Decision(response)

    def forward(
        self,
        *,
        uri: str | None = None,
        add_headers: dict[str, str] | None = None,
        remove_headers: tuple[str, ...] = (),
    ) -> Decision:
        """On to the next in the chain, changed: a new Request-URI, headers added or removed."""
        message = self.raw.copy()
        if uri is not None:
            if not isinstance(message, Request):
                raise ValueError("only a request has a Request-URI")
            message.set_uri(parse_uri(uri, what="uri"))
        for name in remove_headers:
            message.remove(name)
        for name, value in (add_headers or {}).items():
            message.add(name, value)
        return Decision(message)

    def _request_only(self, what: str) -> Request:
        if not isinstance(self.raw, Request):
            raise ValueError(f"cannot {what} a response")
        return self.raw


Result = Decision | None
Handler = Callable[[Message], Result | Awaitable[Result]]


class Processor:
    """Implements sipgrid's Processor (and so Routr's contract once served) around a
    handler of requests and, optionally, one of responses."""

    def __init__(self, on_request: Handler, on_response: Handler | None = None) -> None:
        self._on_request = on_request
        self._on_response = on_response
        self.name = getattr(on_request, "__name__", "processor")

    @property
    def handles_responses(self) -> bool:
        return self._on_response is not None

    def __call__(self, message: Message) -> Result | Awaitable[Result]:
        return self._on_request(message)  # still callable as the function it decorated

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        handler = self._on_request if isinstance(request.message, Request) else self._on_response
        if handler is None:
            return MessageResponse(request.message)
        view = Message(request)
        try:
            decided = handler(view)
            if inspect.isawaitable(decided):
                decided = await decided
        except Exception:
            log.exception("processor %s failed on %s", self.name, request.method)
            if isinstance(request.message, Request):
                return MessageResponse(
                    make_response(
                        request.message,
                        500,
                        f"Server Internal Error ({self.name})",
                        to_tag=None if request.message.to.tag else stable_tag(request.message),
                    )
                )
            return MessageResponse(request.message)
        if decided is None:
            return MessageResponse(request.message)
        if not isinstance(decided, Decision):
            raise TypeError(
                f"{self.name} returned {decided!r}: return msg.reply(), msg.forward() or None"
            )
        return MessageResponse(decided.message)

    async def serve(self, bind_addr: str) -> None:
        """Serve over gRPC (Routr's Processor service and the health check) until cancelled."""
        from sipgrid.services.grpc_servers import start_server

        server = await start_server(bind_addr, processor=self)
        print(f"sipgrid: ready; processor {self.name} on {bind_addr}", flush=True)
        try:
            await server.wait_for_termination()
        finally:
            await server.stop(grace=1.0)

    def run(self, bind_addr: str = "0.0.0.0:51905") -> None:
        """Serve until interrupted (Ctrl-C or SIGTERM)."""
        import signal

        async def main() -> None:
            task = asyncio.create_task(self.serve(bind_addr))
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, task.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await task

        asyncio.run(main())

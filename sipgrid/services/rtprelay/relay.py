"""The RTPRelay middleware: rtpengine between browsers (ICE, DTLS-SRTP, rtcp-mux) and
phones (plain RTP/AVP), and in the media path of every call it sees.

A post-processor in Routr's sense: it sees each request after Connect has routed it,
and each response on its way back, and rewrites their SDP through rtpengine's NG
protocol. The flags depend on the direction: towards a browser (WS or WSS) the SDP must
offer ICE and DTLS-SRTP, towards a phone plain RTP without ICE.

No half-made session is left in rtpengine: a failed offer or answer, a CANCEL, a BYE and
every non-2xx final answer to a call's first INVITE delete it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sipgrid.api.types import (
    META_TARGET_TRANSPORT,
    MessageRequest,
    MessageResponse,
)
from sipgrid.config import ConfigError
from sipgrid.services.settings import Settings
from sipgrid.sip import Request, Response, SipUri, make_response, stable_tag

from .ng import NgClient, NgError

log = logging.getLogger("sipgrid.rtprelay")

_CALLS_MAX = 100_000

COMMON = {"replace": ["origin", "session-connection"], "flags": ["trust-address"]}
TO_WEB = {
    **COMMON,
    "transport-protocol": "UDP/TLS/RTP/SAVPF",
    "ICE": "force",
    "SDES": ["off"],
    "rtcp-mux": ["require"],
    "flags": ["trust-address", "generate-mid"],
}
TO_PHONE = {**COMMON, "transport-protocol": "RTP/AVP", "ICE": "remove", "rtcp-mux": ["demux"]}


def flags_towards(web: bool) -> dict[str, Any]:
    """Routr's four directions come down to the receiver's kind: a browser gets ICE and
    DTLS-SRTP, a phone plain RTP (web to web keeps ICE, phone to phone drops it)."""
    return TO_WEB if web else TO_PHONE


def is_web_uri(uri: object) -> bool:
    """A WebSocket client's URI: transport=ws/wss, or an RFC 7118 ``.invalid`` host."""
    if not isinstance(uri, SipUri):
        return False
    return (uri.transport or "").lower() in ("ws", "wss") or uri.host.lower().endswith(".invalid")


def has_sdp(message: Request | Response) -> bool:
    kind = (message.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    return bool(message.body) and kind == "application/sdp"


@dataclass(slots=True)
class _Call:
    late: bool = False  # the first INVITE had no SDP: the offer comes in the 2xx
    answered: bool = False


class RtpRelay:
    """Implements Processor for a post-processor middleware."""

    handles_responses = True

    def __init__(self, client: NgClient) -> None:
        self.client = client
        self._calls: OrderedDict[str, _Call] = OrderedDict()

    async def process_message(self, request: MessageRequest) -> MessageResponse:
        message = request.message
        try:
            if isinstance(message, Request):
                return MessageResponse(await self._request(request, message))
            return MessageResponse(await self._response(message))
        except NgError as error:
            log.warning("rtpengine: %s (Call-ID %s)", error, message.call_id)
            await self._delete(message.call_id)
            reason = f"Server Internal Error (Media Relay: {str(error)[:60]})"
            if isinstance(message, Request):
                if message.method == "ACK":
                    return MessageResponse(message)
                tag = None if message.to.tag else stable_tag(message)
                return MessageResponse(make_response(message, 500, reason, to_tag=tag))
            message.status, message.reason = 500, reason  # the caller cannot use it
            message.set_body(b"")
            message.remove("Content-Type")
            return MessageResponse(message)

    async def _request(self, request: MessageRequest, message: Request) -> Request | Response:
        method = message.method
        call_id = message.call_id
        if method in ("BYE", "CANCEL"):
            await self._delete(call_id)
            return message
        if method == "INVITE":
            if not has_sdp(message):
                if message.to.tag is None:
                    self._remember(call_id, _Call(late=True))
                return message
            if message.to.tag is None:
                self._remember(call_id, _Call())
            web = _target_is_web(request, message)
            answer = await self.client.command(
                "offer",
                **{"call-id": call_id, "from-tag": message.from_.tag or "", "sdp": message.body},
                **flags_towards(web),
            )
            _set_sdp(message, answer)
            return message
        if method == "ACK" and has_sdp(message):  # the answer to a late offer
            call = self._calls.get(call_id)
            if call is not None and call.late:
                answer = await self.client.command(
                    "answer",
                    **{
                        "call-id": call_id,
                        "from-tag": message.to.tag or "",
                        "to-tag": message.from_.tag or "",
                        "sdp": message.body,
                    },
                    **flags_towards(_target_is_web(request, message)),
                )
                _set_sdp(message, answer)
        return message

    async def _response(self, message: Response) -> Response:
        call_id = message.call_id
        call = self._calls.get(call_id)
        if call is None or message.cseq.method != "INVITE":
            return message  # not a call this relay set up
        status = message.status
        if status >= 300:
            if not call.answered:
                await self._delete(call_id)  # the call never came up
            return message
        if not has_sdp(message) or status == 100:
            return message
        # the response goes to the caller: a browser when its Via says WS or WSS
        web = message.top_via.transport.upper() in ("WS", "WSS")
        if call.late and not call.answered:
            command, tags = "offer", {"from-tag": message.to.tag or ""}
        else:
            command = "answer"
            tags = {"from-tag": message.from_.tag or "", "to-tag": message.to.tag or ""}
        answer = await self.client.command(
            command, **{"call-id": call_id, "sdp": message.body}, **tags, **flags_towards(web)
        )
        _set_sdp(message, answer)
        if 200 <= status < 300:
            call.answered = True
        return message

    def _remember(self, call_id: str, call: _Call) -> None:
        self._calls[call_id] = call
        self._calls.move_to_end(call_id)
        while len(self._calls) > _CALLS_MAX:
            self._calls.popitem(last=False)

    async def _delete(self, call_id: str) -> None:
        if self._calls.pop(call_id, None) is None:
            return
        try:
            await self.client.command("delete", **{"call-id": call_id, "delete-delay": 0})
        except NgError as error:  # gone already, or rtpengine away: it times calls out
            log.info("rtpengine delete of %s: %s", call_id, error)


def _target_is_web(request: MessageRequest, message: Request) -> bool:
    """Where the request goes after routing: the Dispatcher says so, else the
    Request-URI does."""
    named = request.metadata.get(META_TARGET_TRANSPORT)
    if named:
        return named.upper() in ("WS", "WSS")
    return is_web_uri(message.uri)


def _set_sdp(message: Request | Response, answer: dict[bytes, Any]) -> None:
    sdp = answer.get(b"sdp")
    if not isinstance(sdp, bytes):
        raise NgError("rtpengine answered without SDP")
    message.set_body(sdp, "application/sdp")


def relay_from(settings: Settings, required: bool = False) -> RtpRelay | None:
    """Routr's variables: RTPENGINE_HOST and RTPENGINE_PORT (22222 by default)."""
    if not settings.rtpengine_host:
        if required:
            raise ConfigError("environment: field RTPENGINE_HOST: not set (rtpengine's address)")
        return None
    return RtpRelay(NgClient(settings.rtpengine_host, settings.rtpengine_port))

"""Call and registration events to NATS, with Routr's names and fields:
``<subject>.call.started`` (callId, from, to, startTime, extraHeaders),
``<subject>.call.ended`` (callId, endTime, hangupCause, extraHeaders) and
``<subject>.endpoint.registered`` (aor, registeredAt, expires, extraHeaders), all from the
EdgePort, and ``<subject>.endpoint.expired`` (aor, contact, expiredAt) from Location
(services/location/expiry.py); the subject is ``routr`` unless NATS_PUBLISHER_SUBJECT says
otherwise.

On when NATS_URL is set, or, as in Routr, NATS_PUBLISHER_ENABLED=true with
NATS_PUBLISHER_URL (default nats://localhost:4222). Publishing never holds up SIP: an
event is handed to nats-py's buffer, and events are dropped (and counted, and said once in
the log) while NATS cannot be reached; the client reconnects by itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nats.aio.client import Client

    from .settings import Settings

log = logging.getLogger("sipgrid.events")

# Routr's hangup causes for the final answers a call can end with
HANGUP_CAUSES = {
    200: "NORMAL_CLEARING",
    403: "CALL_REJECTED",
    404: "UNALLOCATED_NUMBER",
    408: "RECOVERY_ON_TIMER_EXPIRE",
    480: "NO_USER_RESPONSE",
    486: "USER_BUSY",
    487: "ORIGINATOR_CANCEL",
    503: "NORMAL_TEMPORARY_FAILURE",
    603: "CALL_REJECTED",
}


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class NatsEvents:
    def __init__(self, url: str, subject: str = "routr") -> None:
        self.url = url if "://" in url else f"nats://{url}"
        self.subject = subject
        self.dropped = 0
        self._client: Client | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._said_down = False

    async def start(self) -> None:
        """Connect in the background: a NATS that is down does not stop the service."""
        self._connecting = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        import nats  # only a process that publishes pays for importing it

        while self._client is None:
            try:
                self._client = await nats.connect(
                    self.url,
                    name="sipgrid",
                    connect_timeout=2,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    allow_reconnect=True,
                )
                log.info("events go to NATS at %s (%s.*)", self.url, self.subject)
            except (OSError, nats.errors.Error) as error:
                self._say_down(error)
                await asyncio.sleep(2)

    def publish(self, name: str, fields: Mapping[str, Any]) -> None:
        client = self._client
        if client is None or not client.is_connected:
            self.dropped += 1
            self._say_down("not connected")
            return
        self._said_down = False
        data = json.dumps(fields).encode()
        task = asyncio.ensure_future(client.publish(f"{self.subject}.{name}", data))
        task.add_done_callback(self._published)

    def _published(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.dropped += 1
            self._say_down(task.exception())

    def _say_down(self, why: object) -> None:
        if not self._said_down:
            log.warning("events to NATS at %s are dropped: %s", self.url, why)
            self._said_down = True

    async def stop(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._client is not None:
            from nats.errors import Error as NatsError

            try:
                await self._client.drain()  # what is buffered goes out first
            except (OSError, NatsError):
                await self._client.close()


def events_from(settings: Settings) -> NatsEvents | None:
    """NATS_URL (or Routr's NATS_PUBLISHER_*), when set."""
    url = settings.nats()
    return NatsEvents(url, settings.nats_publisher_subject) if url else None

"""Password guessing, fail2ban style: wrong digest answers are counted per source address;
past ``failures`` within ``window`` seconds the source is banned for ``ban_for`` seconds
and gets 403 for everything. Logged once per ban.

Bans live in memory and, given a store (the APIServer's database in the all-in-one), are
written there and read back every few seconds, so that `sipgrid bans list|remove` sees
and lifts them. Settings: BAN_FAILURES (10), BAN_WINDOW (60 s), BAN_SECONDS (600 s);
BAN_FAILURES=0 turns the guard off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from sipgrid.services.settings import DEFAULTS, Settings

log: Final = logging.getLogger("sipgrid.connect")

RELOAD_EVERY: Final = 2.0
TRACKED_MAX: Final = 100_000


class BanRecord(Protocol):
    @property
    def host(self) -> str: ...

    @property
    def until(self) -> float: ...


class BanStore(Protocol):
    def ban(self, host: str, until: float, reason: str) -> None: ...

    def list(self, now: float | None = None) -> Sequence[BanRecord]: ...


@dataclass(frozen=True, slots=True)
class GuardSettings:
    failures: int = DEFAULTS.ban_failures
    window: float = DEFAULTS.ban_window
    ban_for: float = DEFAULTS.ban_seconds

    @classmethod
    def of(cls, settings: Settings) -> GuardSettings:
        """BAN_FAILURES, BAN_WINDOW and BAN_SECONDS."""
        return cls(settings.ban_failures, settings.ban_window, settings.ban_seconds)


class Guard:
    def __init__(
        self,
        settings: GuardSettings | None = None,
        store: BanStore | None = None,
        clock: Callable[[], float] = time.time,
        reload_every: float = RELOAD_EVERY,
    ) -> None:
        """``reload_every``: seconds between two reads of the store's bans."""
        self.settings = settings or GuardSettings()
        self._store = store
        self._clock = clock
        self._reload_every = reload_every
        self._bans: dict[str, float] = {}  # host -> until
        self._failures: dict[str, list[float]] = {}  # host -> times of recent failures
        self._unsaved: dict[str, tuple[float, str]] = {}  # bans the store has not got yet

    def banned(self, host: str) -> bool:
        until = self._bans.get(host)
        if until is None:
            return False
        if until <= self._clock():
            del self._bans[host]
            return False
        return True

    async def failed(self, host: str, username: str | None) -> None:
        """A wrong password (or an unknown user) from ``host``."""
        settings = self.settings
        if not settings.failures:
            return
        now = self._clock()
        if len(self._failures) > TRACKED_MAX:
            self._failures.clear()
        recent = [t for t in self._failures.get(host, []) if now - t < settings.window]
        recent.append(now)
        self._failures[host] = recent
        if len(recent) < settings.failures or self.banned(host):
            return
        until = now + settings.ban_for
        self._bans[host] = until
        del self._failures[host]
        reason = f"{len(recent)} wrong passwords in {settings.window:g} s (last for {username!r})"
        log.warning("banned %s for %g s: %s", host, settings.ban_for, reason)
        if self._store is not None:
            self._unsaved[host] = (until, reason)
            await self._save()

    async def _save(self) -> None:
        """Write the bans the store has not got yet (the database may be down: they stay
        in force here and are written when it is back)."""
        assert self._store is not None
        for host, (until, reason) in list(self._unsaved.items()):
            try:
                await asyncio.to_thread(self._store.ban, host, until, reason)
            except Exception as error:
                log.info("cannot store the ban of %s yet: %s", host, error)
                return
            self._unsaved.pop(host, None)

    async def run(self) -> None:
        """Follow the store: bans lifted there (sipgrid bans remove) are lifted here."""
        if self._store is None:
            return
        while True:
            await asyncio.sleep(self._reload_every)
            if self._unsaved:
                await self._save()
            try:
                stored = await asyncio.to_thread(self._store.list, self._clock())
            except Exception as error:  # the database is down: keep what we know
                log.info("cannot read the bans: %s", error)
                continue
            self._bans = {b.host: b.until for b in stored}
            self._bans.update({host: until for host, (until, _) in self._unsaved.items()})

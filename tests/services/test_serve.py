"""sipgrid.services.serve: what every service does as it comes up."""

from __future__ import annotations

import asyncio
import gc
import os
import signal

from sipgrid.services import serve


def test_a_service_sets_its_start_up_aside_for_the_collector_before_it_says_ready() -> None:
    """Every service of the distributed wiring, and the all-in-one, comes up through
    ``until_stopped``: what start-up allocated is frozen out of the collector's way and
    young objects are collected rarely, as the all-in-one alone did until session 38
    (its EdgePort 3 % fewer instructions a call, bench/README.md)."""
    before = gc.get_threshold()
    seen: dict[str, object] = {}

    async def scenario() -> None:
        stopped: list[bool] = []

        async def stop_hook() -> None:
            stopped.append(True)

        waiting = asyncio.create_task(serve.until_stopped(stop_hook, "a test"))
        await asyncio.sleep(0)  # until_stopped runs up to its wait for a signal
        seen["threshold"] = gc.get_threshold()
        seen["frozen"] = gc.get_freeze_count()
        os.kill(os.getpid(), signal.SIGTERM)  # caught by the loop's handler, as a service's
        await asyncio.wait_for(waiting, 5)
        assert stopped == [True]

    gc.unfreeze()
    try:
        asyncio.run(scenario())
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert seen["threshold"] == (20_000, 20, 20)
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 0

"""sipgrid.services.eager: a job that never waits runs in the caller's turn, without a
task; one that waits goes on in a task that behaves as one made from the start."""

from __future__ import annotations

import asyncio

import pytest

from sipgrid.services import eager


def test_a_job_that_never_waits_is_done_before_start_returns() -> None:
    done: list[str] = []

    async def job() -> None:
        done.append("answered")

    async def scenario() -> None:
        assert eager.start(job()) is None
        assert done == ["answered"]  # no turn of the loop in between
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(scenario())


def test_a_job_that_waits_goes_on_in_a_task_with_what_it_waited_for() -> None:
    steps: list[str] = []

    async def job(answer: asyncio.Future[str]) -> str:
        steps.append("asked")
        got = await answer
        steps.append(f"got {got}")
        await asyncio.sleep(0)  # a bare yield, as well as a future
        return got.upper()

    async def scenario() -> None:
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = eager.start(job(answer))
        assert task is not None and steps == ["asked"]
        await asyncio.sleep(0)
        assert not task.done()
        answer.set_result("200")
        assert await task == "200"
        assert steps == ["asked", "got 200"]

    asyncio.run(scenario())


def test_a_failure_of_what_it_waits_for_reaches_the_job() -> None:
    async def job(answer: asyncio.Future[str]) -> str:
        try:
            return await answer
        except ConnectionError as error:
            return f"503 ({error})"

    async def scenario() -> None:
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = eager.start(job(answer))
        assert task is not None
        answer.set_exception(ConnectionError("processor down"))
        assert await task == "503 (processor down)"

    asyncio.run(scenario())


def test_a_waiting_job_is_cancelled_as_a_task_would_be() -> None:
    cleaned: list[bool] = []

    async def job(answer: asyncio.Future[str]) -> None:
        try:
            await answer
        finally:
            cleaned.append(True)

    async def scenario() -> None:
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = eager.start(job(answer))
        assert task is not None
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled() and answer.cancelled() and cleaned == [True]

    asyncio.run(scenario())


def test_errors_come_out_where_they_happen() -> None:
    async def fails_at_once() -> None:
        raise ValueError("at once")

    async def fails_later(answer: asyncio.Future[None]) -> None:
        await answer
        raise ValueError("later")

    async def scenario() -> None:
        with pytest.raises(ValueError, match="at once"):
            eager.start(fails_at_once())
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = eager.start(fails_later(answer))
        assert task is not None
        answer.set_result(None)
        with pytest.raises(ValueError, match="later"):
            await task

    asyncio.run(scenario())


def test_jobs_started_in_one_turn_may_wait_on_the_same_future() -> None:
    """The first job hands the future on to its task, which takes it a turn later; a
    second job awaiting it meanwhile must not find it marked as taken (the EdgePort's
    sends to one next hop wait on one connection attempt)."""

    async def job(connected: asyncio.Future[str], n: int) -> str:
        return f"{n} via {await connected}"

    async def scenario() -> None:
        connected: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        tasks = [eager.start(job(connected, n)) for n in range(3)]
        connected.set_result("tcp")
        assert [await task for task in tasks if task is not None] == [
            "0 via tcp",
            "1 via tcp",
            "2 via tcp",
        ]

    asyncio.run(scenario())


def test_a_job_cancelled_before_its_task_first_runs_sees_the_cancellation() -> None:
    seen: list[str] = []

    async def job(answer: asyncio.Future[str]) -> None:
        try:
            await answer
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def scenario() -> None:
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = eager.start(job(answer))
        assert task is not None
        task.cancel()  # in the same turn: the task has not taken the future yet
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen == ["cancelled"]

    asyncio.run(scenario())

"""What every datagram passes through between the socket and the core, compiled with it.

The UDP shell hands a datagram to the :class:`Carrier`, which gives it to the core and
carries out what the core asks: bytes sent on a UDP socket or an open connection, a job
given to the processor, the one timer armed. The rest, rarer (a connection to open, a
target to resolve, a hand-off between workers, a call event to log and publish), it gives
back to its :class:`Owner`, the EdgePort (server.py), which owns the listeners, the
connections and everything else about the sockets.

This module is compiled with the SIP core (native/build.py): compiling these few
functions took 7 % off a call's instructions (bench/README.md, session 18). Values
that come from the event loop are typed ``Any``: compiled code checks a declared type at
run time, and uvloop does not always give what typeshed says.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from types import CoroutineType
from typing import Any, Final, Protocol, cast

from sipgrid.api.types import MessageResponse, NetInterface, Processor, Transport
from sipgrid.sip import is_ip

from .. import eager
from .core import Action, CallEvent, EdgePortCore, Process, Transmit

log: Final = logging.getLogger("sipgrid.edgeport")
_FINISHED: Final = object()  # what next() gives for a job that has finished

# seconds: the core's timers are served on this grid (RFC 3261's are 0.5 s and up)
TICK: Final = 0.01


class Owner(Protocol):
    """What the carrier leaves to the EdgePort."""

    def _elsewhere(self, data: bytes, flow: NetInterface) -> bool: ...

    def _hand_to_worker_0(self, action: Transmit) -> bool: ...

    def _act(self, action: Action) -> None: ...

    def _on_call(self, event: CallEvent) -> None: ...

    def _on_timer(self) -> None: ...

    def _failed(self, token: object) -> None: ...

    async def _connect_and_send(
        self, destination: NetInterface, data: bytes, token: object
    ) -> None: ...


class UdpShell:
    """One UDP listening point: the protocol its socket reports to (asyncio's
    DatagramProtocol, by duck typing: a compiled class cannot derive from it)."""

    def __init__(self, carrier: Carrier) -> None:
        self.carrier = carrier
        self.socket: Any = None

    def connection_made(self, transport: Any) -> None:
        self.socket = transport

    def connection_lost(self, exc: Any) -> None:
        pass

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.carrier.received(data, NetInterface(addr[0], addr[1], Transport.UDP))

    def error_received(self, exc: Any) -> None:
        log.debug("UDP error: %s", exc)

    def sendto(self, data: bytes, destination: NetInterface) -> bool:
        socket = self.socket
        if socket is None or socket.is_closing():
            return False
        try:
            socket.sendto(data, destination.address)
        except (OSError, ValueError) as error:
            log.info("cannot send to %s: %s", destination, error)
            return False
        return True


class Carrier:
    """Carries a datagram to the core and the core's actions out (see the module)."""

    def __init__(
        self,
        owner: Owner,
        processor: Processor,
        clock: Callable[[], float],
        connections: dict[NetInterface, Any],
        errors: Counter[str],
    ) -> None:
        self.owner = owner
        self.processor = processor
        self.clock = clock
        self.connections = connections  # the EdgePort's: flow -> Connection
        self.errors = errors  # the EdgePort's counters
        self.core: EdgePortCore | None = None  # set when the EdgePort has started
        self.udp: list[tuple[bool, UdpShell]] = []  # (IPv6?, shell) per listening point
        # set when the hand-offs between workers open (server.py): a message may be
        # another worker's, and a worker other than 0 hands worker 0 what goes on a connection
        self.handing_off = False
        self.worker_0 = True
        self.http: Any = None  # the EdgePort's metrics, when it keeps them
        self.tasks: set[Any] = set()
        # a processor that takes a job without a coroutine (GrpcProcessor.submit): its
        # answer comes to a function, in the turn that reads it; a task, its future and
        # the coroutines it resumes are not made for each job (bench/README.md, session 30)
        self.submit: Any = getattr(processor, "submit", None)
        self.stopped = False
        self.wakeup: Any = None  # the loop's timer handle
        self.wakeup_at = math.inf

    def received(self, data: bytes, flow: NetInterface) -> None:
        """A datagram (or a WebSocket message) from ``flow``."""
        core = self.core
        if core is None:
            return
        now = self.clock()
        if self.handing_off and self.owner._elsewhere(data, flow):
            return
        self.run(core.receive_datagram(data, flow, now))

    def run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                self.transmit(action)
            elif isinstance(action, Process):
                submit = self.submit
                if submit is None or not submit(action.request, self._answer_for(action.job)):
                    self.spawn(self.process(action))
            elif isinstance(action, CallEvent):
                self.owner._on_call(action)
            else:
                self.owner._act(action)
        self.arm()

    def transmit(self, action: Transmit) -> None:
        if not self.worker_0 and self.owner._hand_to_worker_0(action):
            return
        data = action.data
        flow = action.flow
        if flow is not None:
            connection = self.connections.get(flow)
            if connection is not None and connection.send(data):
                return
            if flow.transport is Transport.UDP:
                if not self.sendto(data, flow):
                    self.owner._failed(action.token)
                return
            if flow != action.destination:
                log.info("flow %s is gone: sending to %s", flow, action.destination)
        destination = action.destination
        if destination.transport is Transport.UDP:
            if not self.sendto(data, destination):
                self.owner._failed(action.token)
            return
        connection = self.connections.get(destination)
        if connection is not None and connection.send(data):
            return
        self.spawn(self.owner._connect_and_send(destination, data, action.token))

    def sendto(self, data: bytes, destination: NetInterface) -> bool:
        host = destination.host
        if not is_ip(host):
            return False
        v6 = ":" in host
        for shell_v6, shell in self.udp:
            if shell_v6 == v6:
                return shell.sendto(data, destination)
        return False

    async def process(self, action: Process) -> None:
        result: MessageResponse | None
        started = time.perf_counter()
        try:
            result = await self.processor.process_message(action.request)
        except Exception as error:  # the processor is down or failed: 503 upstream
            log.warning("processor failed: %s", error)
            result = None
        self.answered(action.job, result, started)

    def _answer_for(self, job: int) -> Callable[[MessageResponse | None], None]:
        """What ``submit`` hands the answer to ``job`` to; after ``stop`` it drops it, as
        the tasks of the jobs in flight are cancelled then."""
        started = time.perf_counter()

        def answer(result: MessageResponse | None) -> None:
            if self.stopped:
                return
            try:
                self.answered(job, result, started)
            except Exception as error:  # as a task's: logged and counted, never raised
                self.errors["task_errors"] += 1
                log.error("edgeport task failed", exc_info=error)

        return answer

    def answered(self, job: int, result: MessageResponse | None, started: float) -> None:
        """The processor's answer to ``job`` (None: it failed or is down), given to the core."""
        if self.http is not None:
            self.http.processor_latency.observe(time.perf_counter() - started)
        core = self.core
        if core is not None:
            # a processor may say, answer by answer, whether it reads responses at all
            core.settings.handles_responses = self.processor.handles_responses
            self.run(core.processor_answered(job, result, self.clock()))

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run the job now, and as a task only once it has to wait (``eager``): in the
        all-in-one, Connect answers most requests without waiting."""
        # eager.start written out: a call into it was an interpreted frame for every job
        try:
            if type(coroutine) is CoroutineType:  # interpreted (an EdgePort job, or no compiler)
                waiting = coroutine.send(None)
            else:
                # compiled, and so an iterator too: its first step by next(), whose
                # default takes the end without a StopIteration raised and caught
                # (mypyc adds a traceback entry to each: 8,000 instructions a REGISTER
                # exchange's two jobs, callgrind)
                waiting = next(cast("Iterator[Any]", coroutine), _FINISHED)
                if waiting is _FINISHED:
                    return
        except StopIteration:
            return
        except Exception as error:
            self.errors["task_errors"] += 1
            log.error("edgeport task failed", exc_info=error)
            return
        task = eager.resume(coroutine, waiting)
        self.tasks.add(task)
        task.add_done_callback(self.task_done)

    def task_done(self, task: Any) -> None:
        """Every task's exception is retrieved: a bug is logged and counted, never left behind."""
        self.tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.errors["task_errors"] += 1
            log.error("edgeport task failed", exc_info=error)

    # -- the one timer

    def arm(self) -> None:
        """Wake at the end of the TICK in which the core's next deadline falls: one wake-up
        serves every deadline of that tick (a busy server has thousands a second)."""
        core = self.core
        deadline = core.next_deadline() if core is not None else None
        if deadline is None:
            return
        wake_at = math.ceil(deadline / TICK) * TICK
        if wake_at >= self.wakeup_at:
            return
        if self.wakeup is not None:
            self.wakeup.cancel()
        self.wakeup_at = wake_at
        delay = max(0.0, wake_at - self.clock())
        self.wakeup = asyncio.get_running_loop().call_later(delay, self.owner._on_timer)

    def on_timer(self) -> None:
        """The loop's timers may fire a little early (uvloop rounds a delay to the nearest
        millisecond, on a millisecond clock): what was due by the time asked for is
        served now, else the same wake-up would be asked for again and again."""
        self.wakeup = None
        due, self.wakeup_at = self.wakeup_at, math.inf
        core = self.core
        if core is not None:
            self.run(core.handle_timers(max(self.clock(), due)))

    def stop(self) -> None:
        self.stopped = True
        for task in list(self.tasks):
            task.cancel()
        if self.wakeup is not None:
            self.wakeup.cancel()
            self.wakeup = None

"""One "Get Next" press three ways, as the open-loop part sends it: what an assistant does between two calls.

* ``NOOP_PAIR``: ``bench.noop`` then ``bench.noop_complete``, two Celery round
  trips that touch no store (the baseline);
* ``PRESS`` (two trips): ``assign_next_student``, then ``complete_student`` of
  the student handed out (or ``--open-loop-probe``'s bare claim, then that);
* ``ONE_TRIP``: ``complete_and_next``, the completion of the student the
  assistant holds and the claim of the next one in one request. A one-trip
  assistant holds a student before its first press (``prime``, outside any
  window) and after each one; ``FinishJob`` completes what they hold at the
  end, so every student claimed is completed exactly once.

A press's latency (``total_ms``) runs from its arrival until its last answer:
both trips of a pair, the one of a one-trip press. ``PressLoopJob`` presses
in a closed loop, for each kind's saturated capacity in presses per second.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from bench.harness.desks import BenchError
from bench.harness.integrity import COMPLETED, HELD, Answer
from bench.tasks import NOOP_COMPLETE_TASK, NOOP_TASK
from callqueue.config import Settings
from callqueue.producers.client import AssignmentClient

ASSIGN_TASK = "callqueue.assign_next_student"
COMPLETE_TASK = "callqueue.complete_student"
PAIR_TASK = "callqueue.complete_and_next"
NOOP_PAIR = "noop_pair"
PRESS = "assign_complete"
ONE_TRIP = "complete_and_next"
KINDS = (NOOP_PAIR, PRESS, ONE_TRIP)
HOLDS = "one-trip holds"  # desk cache key: (session, assistant) -> (student, token) a one-trip assistant holds
CLAIMS = "one-trip claims"  # desk cache key: every claim one-trip presses and primes were told of


class ClientSet(list):
    """The clients of one desk, closed together when the desk stops."""

    def close(self) -> None:
        for client in self:
            client.close()


def desk_clients(cache: dict[str, Any], environ: dict[str, str], count: int, timeout_seconds: float,
                 warm_task: str | None = None, forget_answers: bool = True) -> list[AssignmentClient]:
    """``count`` producer clients a desk keeps across jobs; new ones make one ``warm_task`` call.

    The warming call opens each client's broker and result connections
    outside any measured window. ``forget_answers=False``: clients that leave
    every answer in the result backend, as a stock Celery caller does.
    """
    key = f"clients-{timeout_seconds}-{forget_answers}"
    clients = cache.get(key)
    if clients is None or len(clients) < count:
        if clients is not None:
            clients.close()
        settings = Settings.from_env(environ)
        clients = cache[key] = ClientSet([AssignmentClient(settings, timeout_seconds=timeout_seconds, retries=0,
                                                           forget_answers=forget_answers) for _ in range(count)])
        for client in clients if warm_task else ():
            client.call(warm_task, call_session_id="warm", assistant_id="warm")
    return clients[:count]


@dataclass(frozen=True)
class PressRecord:
    """One press as its desk saw it; times in ms, None where that step did not happen.

    ``assign_ms`` (arrival to the answer naming the next student: the assign,
    or the one-trip answer) and ``total_ms`` (arrival to the press's last
    answer) include ``lag_ms``, how late the press was sent.
    """

    lag_ms: float
    assign_ms: float | None
    assign_trip_ms: float | None
    complete_ms: float | None
    total_ms: float | None
    assign_status: str
    complete_status: str | None
    waited_for_sender: bool
    waited_for_assistant: bool
    answer: Answer | None

    @property
    def answered(self) -> bool:
        """Assigned (or no-op), then completed (or no-op): the press did what it should."""
        return self.assign_status in ("assigned", "noop") and self.complete_status in (COMPLETED, "noop")


class Arrival(NamedTuple):
    """When a press was due, by whom, and whether it had to wait for a sender or an assistant."""

    number: int
    due: float
    assistant: str
    waited_for_sender: bool = False
    waited_for_assistant: bool = False


@dataclass(frozen=True)
class Presser:
    """Sends one press of ``kind`` in ``session_id`` (see module doc); ``cache`` is the desk's."""

    kind: str
    session_id: str
    outcome: str
    press_task: str
    cache: dict[str, Any]

    def press(self, client: AssignmentClient, arrival: Arrival) -> PressRecord:
        sent = time.monotonic()
        try:
            if self.kind == ONE_TRIP:
                return self._one_trip(client, arrival, sent)
            return self._two_trips(client, arrival, sent)
        except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
            return failed(arrival, sent, f"error:{type(exc).__name__}")

    def _two_trips(self, client: AssignmentClient, arrival: Arrival, sent: float) -> PressRecord:
        """Assign (or its no-op), then complete the student handed out (or its no-op)."""
        noop = self.kind == NOOP_PAIR
        answer = client.call(NOOP_TASK if noop else self.press_task, call_session_id=self.session_id,
                             assistant_id=arrival.assistant, request_id=uuid.uuid4().hex)
        answered = time.monotonic()
        status, hold = _read_assign(answer, arrival, self.session_id)
        complete_status, completed = None, None
        if hold is not None:
            completion = client.call(NOOP_COMPLETE_TASK if noop else COMPLETE_TASK, call_session_id=self.session_id,
                                     student_id=hold[0], assistant_id=arrival.assistant, outcome=self.outcome,
                                     assignment_token=hold[1])
            completed, complete_status = time.monotonic(), _completion_status(completion, hold[0])
        return PressRecord(
            _ms(sent - arrival.due), _ms(answered - arrival.due), _ms(answered - sent),
            None if completed is None else _ms(completed - answered),
            None if completed is None else _ms(completed - arrival.due), status, complete_status,
            arrival.waited_for_sender, arrival.waited_for_assistant,
            None if hold is None or noop else Answer(self.session_id, hold[0], arrival.assistant, hold[1],
                                                     complete_status or HELD))

    def _one_trip(self, client: AssignmentClient, arrival: Arrival, sent: float) -> PressRecord:
        """Complete the student the assistant holds and take the next one, in one request."""
        holds = self.cache.setdefault(HOLDS, {})
        student, token = holds.pop((self.session_id, arrival.assistant))
        result = client.call(PAIR_TASK, call_session_id=self.session_id, student_id=student,
                             assistant_id=arrival.assistant, outcome=self.outcome, assignment_token=token,
                             request_id=uuid.uuid4().hex)
        answered = time.monotonic()
        status, hold = _read_assign(result["next"], arrival, self.session_id)
        if hold is not None:
            holds[(self.session_id, arrival.assistant)] = hold
            self.cache.setdefault(CLAIMS, []).append(Answer(self.session_id, hold[0], arrival.assistant, hold[1]))
        return PressRecord(_ms(sent - arrival.due), _ms(answered - arrival.due), _ms(answered - sent), None,
                           _ms(answered - arrival.due), status, _completion_status(result["completion"], student),
                           arrival.waited_for_sender, arrival.waited_for_assistant, None)


def _read_assign(answer: dict[str, Any], arrival: Arrival, session_id: str) -> tuple[str, tuple[str, int] | None]:
    """The assign answer's status and what to complete next: (student id, token), or None."""
    status = str(answer.get("status"))
    if status == "noop":
        return status, (f"{session_id}:s{arrival.number:06d}", 1)
    if status != "assigned":
        return status, None
    hold = (str(answer["student_id"]), int(answer["assignment_token"]))
    if answer.get("assigned_to") != arrival.assistant:
        return "wrong_assistant", hold
    return ("already_held" if answer.get("already_held") else "assigned"), hold


def _completion_status(answer: dict[str, Any], student_id: str) -> str:
    status = str(answer.get("status"))
    return "wrong_student" if status == COMPLETED and answer.get("student_id") != student_id else status


def failed(arrival: Arrival, sent: float, status: str) -> PressRecord:
    return PressRecord(_ms(sent - arrival.due), None, None, None, None, status, None,
                       arrival.waited_for_sender, arrival.waited_for_assistant, None)


def _ms(seconds: float) -> float:
    return seconds * 1000


def prime(cache: dict[str, Any], clients: list[AssignmentClient], session_id: str,
          assistants: tuple[str, ...]) -> None:
    """Hand every one-trip assistant that holds nothing yet a student (before any window, all desks' clients)."""
    holds = cache.setdefault(HOLDS, {})
    waiting = [assistant for assistant in assistants if (session_id, assistant) not in holds]

    def claim(index: int) -> None:
        client = clients[index % len(clients)]
        for assistant in waiting[index::len(clients)]:
            answer = client.call(ASSIGN_TASK, call_session_id=session_id, assistant_id=assistant,
                                 request_id=uuid.uuid4().hex)
            status, hold = _read_assign(answer, Arrival(0, 0.0, assistant), session_id)
            if status != "assigned" or hold is None:
                raise BenchError(f"priming {assistant} in {session_id}: {status}")
            holds[(session_id, assistant)] = hold
            cache.setdefault(CLAIMS, []).append(Answer(session_id, hold[0], assistant, hold[1]))

    with ThreadPoolExecutor(len(clients)) as threads:
        list(threads.map(claim, range(min(len(clients), len(waiting)))))


@dataclass(frozen=True)
class FinishJob:
    """One desk: complete every student its one-trip assistants hold; the claims they were told of, all ended."""

    environ: dict[str, str]
    timeout_seconds: float
    outcome: str

    def prepare(self, cache: dict[str, Any]) -> Callable[[float], list[Answer]]:
        return lambda _go_time: self._finish(cache)

    def _finish(self, cache: dict[str, Any]) -> list[Answer]:
        holds: dict[tuple[str, str], tuple[str, int]] = cache.pop(HOLDS, {})
        clients = desk_clients(cache, self.environ, max(1, min(16, len(holds))), self.timeout_seconds)

        def complete(index: int) -> None:
            for (session_id, assistant), (student, token) in list(holds.items())[index::len(clients)]:
                answer = clients[index].call(COMPLETE_TASK, call_session_id=session_id, student_id=student,
                                             assistant_id=assistant, outcome=self.outcome, assignment_token=token)
                if _completion_status(answer, student) != COMPLETED:
                    raise BenchError(f"finishing {student} of {assistant}: {answer.get('status')}")

        with ThreadPoolExecutor(len(clients)) as threads:
            list(threads.map(complete, range(len(clients))))
        return [answer._replace(ended=COMPLETED) for answer in cache.pop(CLAIMS, [])]


@dataclass(frozen=True)
class PressLoopJob:
    """One desk's share of a closed loop: each of ``threads`` assistants presses ``kind`` again as soon as its
    last press is answered, for ``seconds`` (one-trip assistants primed first)."""

    environ: dict[str, str]
    timeout_seconds: float
    kind: str
    session_id: str
    prefix: str
    threads: int
    seconds: float
    outcome: str
    press_task: str = ASSIGN_TASK
    forget_answers: bool = True

    def prepare(self, cache: dict[str, Any]) -> Callable[[float], tuple[list[PressRecord], float]]:
        clients = desk_clients(cache, self.environ, self.threads, self.timeout_seconds, NOOP_TASK,
                               self.forget_answers)
        assistants = tuple(f"{self.prefix}-t{index}" for index in range(self.threads))
        if self.kind == ONE_TRIP:
            prime(cache, clients, self.session_id, assistants)
        presser = Presser(self.kind, self.session_id, self.outcome, self.press_task, cache)
        return lambda go_time: self._run(presser, clients, assistants, go_time)

    def _run(self, presser: Presser, clients: list[AssignmentClient], assistants: tuple[str, ...],
             go_time: float) -> tuple[list[PressRecord], float]:
        deadline = go_time + self.seconds

        def loop(index: int) -> list[PressRecord]:
            records: list[PressRecord] = []
            while time.monotonic() < deadline:
                records.append(presser.press(clients[index], Arrival(len(records), time.monotonic(),
                                                                       assistants[index])))
            return records

        with ThreadPoolExecutor(len(clients)) as threads:
            records = [record for share in threads.map(loop, range(len(clients))) for record in share]
        return records, time.monotonic()

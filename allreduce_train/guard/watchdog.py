"""No silent hangs: a thread on every rank that watches its collectives.

The main thread marks where it is: `where = (step, "the all-reduce", perf_counter_ns())`
going in, `(step, None, ...)` coming out (a tuple: next to no cost in a step). A rank
whose wait passes --stall-warn asks every rank, over a communicator of the watchdogs' own,
where it is; the ranks that do not answer within GRACE_S are stopped or hung (a SIGSTOPped
process's threads are stopped too), and one that answers from outside the collective has
not joined it. The lowest waiting rank that answered says so, once per collective, Horovod
style, and the run goes on. Past --comm-timeout, if a rank does not answer or has stayed
away from the collective that long, it says so as an error and ends the job (MPI_Abort
with exits.TIMEOUT); when all answer from inside it (a slow evaluation, a big checkpoint)
the job is alive and goes on. Should the speaker be the silent one, the others speak a
little later. A rank's answer is its watchdog's, so a main thread that is busy (in
compute, in a sleep) is still seen as alive.
"""

from __future__ import annotations

import sys
import threading
import time

from .. import exits

GRACE_S = 2.0  # how long an asking rank waits for the answers


class Watchdog:
    def __init__(self, channel, rank: int, size: int, stall_warn_s: float, timeout_s: float):
        """channel: comm.WatchChannel (send, poll, abort); 0 disables a threshold."""
        self.channel, self.rank, self.size = channel, rank, size
        self.stall_warn_s, self.timeout_s = stall_warn_s, timeout_s
        self.where = (None, None, time.perf_counter_ns())  # (step, collective or None, since)
        limits = [t for t in (stall_warn_s, timeout_s) if t > 0]
        self.tick_s = min([0.5, *(t / 5 for t in limits)])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._asked = None  # (deadline, collective key, replies) while asking
        self._said = set()  # (collective key, "warn" | "error") already said
        self._hold_until = 0.0  # no timeout verdict before then (all answered, lately)

    def start(self) -> Watchdog:
        if self.size > 1 and (self.stall_warn_s > 0 or self.timeout_s > 0):
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def enter(self, step, name: str) -> None:
        """The main thread goes into collective `name` of `step`."""
        self.where = (step, name, time.perf_counter_ns())

    def leave(self) -> None:
        self.where = (self.where[0], None, time.perf_counter_ns())

    # --- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            now = time.perf_counter_ns() / 1e9  # CLOCK_MONOTONIC, as the main thread's
            for src, message in self.channel.poll():
                if message[0] == "ask":
                    self.channel.send(src, ("state", self.where, now))
                elif message[0] == "state" and self._asked is not None:
                    self._asked[2][src] = message[1:]
            self._check(now)

    def _check(self, now: float) -> None:
        step, name, since = self.where
        if name is None:
            self._asked = None
            return
        key, waited = (step, name), now - since / 1e9
        level = None
        if self.timeout_s > 0 and waited > self.timeout_s and now >= self._hold_until:
            level = "error"
        elif self.stall_warn_s > 0 and waited > self.stall_warn_s:
            level = "warn"
        if level is None or (key, level) in self._said:
            return
        if self._asked is None or self._asked[1] != key:
            self._asked = (now + GRACE_S, key, {self.rank: (self.where, now)})
            for peer in range(self.size):
                if peer != self.rank:
                    self.channel.send(peer, ("ask",))
            return
        deadline, _, replies = self._asked
        if len(replies) < self.size and now < deadline:
            return
        # the lowest rank waiting anywhere speaks (async ranks wait in different places)
        waiting = sorted(r for r, (where, _) in replies.items() if where[1] is not None)
        speaker = waiting[0] if waiting else self.rank
        late = (self.rank != speaker) * 3 * GRACE_S  # the speaker first; others if it fails
        if level == "error" and late and waited < self.timeout_s + late:
            return
        self._said.add((key, level))
        self._asked = None
        if level == "error" and not stuck(key, replies, self.size, self.timeout_s):
            # every rank answers, none away for the timeout: slow, not stuck; look again
            # after another timeout (a rank may stop, or stay away, later)
            self._said.discard((key, "error"))
            self._hold_until = now + self.timeout_s
            level = "warn"
            if (key, level) in self._said:
                return
            self._said.add((key, level))
        if level == "warn" and self.rank != speaker:
            return
        line = verdict(self.rank, key, waited, replies, self.size)
        if level == "warn":
            print(f"allreduce_train: warning: {line}", file=sys.stderr, flush=True)
            return
        print(f"allreduce_train: error: {line}", file=sys.stderr, flush=True)
        self.channel.abort(exits.TIMEOUT)


def stuck(key, replies: dict, size: int, timeout_s: float) -> bool:
    """A rank does not answer, or has stayed away from the collective for the timeout. (All
    answering from inside it, or busy for less: a slow step, an evaluation of a big test
    set, a big checkpoint; the job is alive and the wait goes on.)"""
    if len(replies) < size:
        return True
    return any(
        where[:2] != key and asked_at - where[2] / 1e9 > timeout_s
        for where, asked_at in replies.values()
    )


def verdict(rank: int, key, waited: float, replies: dict, size: int) -> str:
    """One line: who waits in which collective, for whom, and what those are doing."""
    step, name = key
    silent = [r for r in range(size) if r not in replies]
    elsewhere = [
        f"rank {r} has not joined it ("
        + (f"in {where[1]}" if where[1] else "busy outside collectives")
        + (f" of step {where[0]}" if where[1] and where[0] is not None else "")
        + f" for {asked_at - where[2] / 1e9:.0f} s)"
        for r, (where, asked_at) in sorted(replies.items())
        if where[:2] != key
    ]
    causes = elsewhere[:]
    if silent:
        causes.insert(
            0,
            f"rank{'s' * (len(silent) > 1)} {', '.join(map(str, silent))} "
            f"do{'es' * (len(silent) == 1)} not answer (stopped, or hung outside Python)",
        )
    where = f"{name} of step {step}" if step is not None else name
    return f"rank {rank}: no progress in {where} for {waited:.0f} s: " + (
        "; ".join(causes) or "every rank is in it, still working"
    )

"""Faults injected on purpose (`--inject kind=K,rank=R,step=S[,secs=T]`), for the tests
that prove failures end cleanly and for users who study what a failure does to a job.

Each strikes rank R once, in step S, after its gradient is computed and before it enters
the all-reduce (where a real fault hurts the others most):
  exception  raises InjectedFault (the run ends, every rank, naming rank R)
  exit       the process exits at once with status 1, without a word (a crashed peer)
  kill       SIGKILL to itself (the OOM killer's way)
  stop       SIGSTOP to itself: alive, silent, never joining (--comm-timeout catches it)
  sleep      sleeps `secs` seconds (default 10), then goes on (--stall-warn names it)
  nan        its local gradient becomes NaN (the non-finite check names it)
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from ..exits import InjectedFault

KINDS = ("exception", "exit", "kill", "stop", "sleep", "nan")


@dataclass(frozen=True)
class Injection:
    kind: str
    rank: int
    step: int
    secs: float = 10.0

    def strike(self, rank: int, step: int, grads) -> None:
        """Do the fault if this is its rank and step."""
        if rank != self.rank or step != self.step:
            return
        if self.kind == "exception":
            raise InjectedFault(f"fault injected by --inject at step {step}")
        if self.kind == "exit":
            os._exit(1)
        if self.kind in ("kill", "stop"):
            os.kill(os.getpid(), signal.SIGKILL if self.kind == "kill" else signal.SIGSTOP)
        elif self.kind == "sleep":
            time.sleep(self.secs)
        elif self.kind == "nan":
            grads[: max(1, len(grads) // 7)] = float("nan")


@dataclass(frozen=True)
class Straggler:
    """--straggler RANK:SECONDS or RANK:xFACTOR on its rank: each step's compute made longer
    on purpose, by seconds or by a factor of what it took."""

    seconds: float
    factor: float

    @classmethod
    def of(cls, spec, rank: int) -> Straggler | None:
        """The straggler of `rank` from (rank, seconds, factor), or None."""
        return cls(spec[1], spec[2]) if spec and spec[0] == rank else None

    def slow(self, t0_ns: int) -> None:
        """Sleep so that the compute begun at perf_counter_ns() t0_ns takes as long as
        asked."""
        took_s = (time.perf_counter_ns() - t0_ns) / 1e9
        time.sleep(self.seconds + (self.factor - 1) * took_s)


def parse(text: str) -> Injection:
    """`kind=K,rank=R,step=S[,secs=T]`; ValueError with what is wrong."""
    fields = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in ("kind", "rank", "step", "secs"):
            raise ValueError(f"unexpected {part!r}")
        if key.strip() in fields:
            raise ValueError(f"{key.strip()} given twice")
        fields[key.strip()] = value.strip()
    missing = [k for k in ("kind", "rank", "step") if k not in fields]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    if fields["kind"] not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {fields['kind']!r}")
    try:
        rank, step = int(fields["rank"]), int(fields["step"])
        secs = float(fields.get("secs", 10.0))
    except ValueError:
        raise ValueError("rank and step must be integers, secs a number") from None
    if rank < 0 or step < 0 or not 0 <= secs < 1e6:
        raise ValueError("rank and step count from 0; secs must be in [0, 1e6)")
    return Injection(fields["kind"], rank, step, secs)

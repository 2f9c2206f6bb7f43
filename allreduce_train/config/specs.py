"""The options that are little languages (--trace-steps, --straggler, --compress), parsed: a
bad one is a UsageError naming the option and what it wants."""

from __future__ import annotations

from netsim.algorithms import compression
from netsim.errors import InputError

from ..exits import UsageError


def compress(text: str) -> compression.Compression:
    """--compress none, fp16, bf16, topk:RATIO or powersgd:RANK: the method and its parameter
    (netsim.algorithms.compression defines what each sends)."""
    try:
        return compression.parse(text)
    except InputError as exc:
        raise UsageError(f"--compress: {exc}") from None


def trace_steps(text: str) -> frozenset[int]:
    """--trace-steps "1-3,10" or "none": the steps drawn in timeline.json."""
    if text.strip().lower() == "none":
        return frozenset()
    steps = set()
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            first, last = int(first), int(last or first)
            if not first <= last <= first + 10**5:
                raise UsageError(
                    f"--trace-steps: {part.strip()} must run forwards, over at most 100,000 "
                    "steps (a timeline of more could not be read)"
                )
            steps.update(range(first, last + 1))
    except ValueError:
        raise UsageError(f"--trace-steps wants steps like 1-3,10 or none, got {text!r}") from None
    if any(s < 0 for s in steps):
        raise UsageError(f"--trace-steps: steps count from 0, got {text!r}")
    return frozenset(steps)


def straggler(text: str) -> tuple[int, float, float]:
    """--straggler RANK:SECONDS or RANK:xFACTOR: (rank, extra seconds, slowdown factor)."""
    rank, _, amount = text.partition(":")
    try:
        rank = int(rank)
        factor = float(amount[1:]) if amount.startswith("x") else 1.0
        seconds = 0.0 if amount.startswith("x") else float(amount)
    except ValueError:
        rank = -1
    if rank < 0 or not (0 <= seconds <= 3600 and 1 <= factor <= 1000):  # NaN fails too
        raise UsageError(
            f"--straggler wants RANK:SECONDS (e.g. 2:0.2, at most 3600) or RANK:xFACTOR "
            f"(e.g. 2:x1.5, 1 to 1000), got {text!r}"
        )
    return rank, seconds, factor

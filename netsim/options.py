"""The types of netsim's command-line options (argparse calls them on the text given) and
their bounds: a value out of them is one line naming the option and exit code 2."""

from __future__ import annotations

import argparse
import math

# Sane bounds of the options, checked as they are parsed: beyond them a request is a typo, or
# work that would take hours and all memory (the chunks and channels of a schedule multiply
# its rounds and flows: 64 chunks of 256 ranks take minutes already).
MAX_PARAMS = 2**40  # 1.1 trillion: the gradient of the largest models, and int64-safe offsets
MAX_CHANNELS = 64
MAX_CHUNKS = 64
MAX_TIMEOUT_S = 86400.0
MAX_BYTES = 1 << 40  # a buffer size beyond 1 TiB is a typo
MAX_BATCH = 1 << 24  # samples per GPU per micro-step
MAX_ACCUMULATE = 1 << 20  # micro-steps per step


def integer(low: int, high: int | None = None):
    """An argparse type: an integer from low to high (no bound above: None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or high is not None and value > high:
            bounds = f"at least {low:,}" if high is None else f"in {low:,}..{high:,}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value:,}")
        return value

    return parse


COUNT_UNITS = {"K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9}  # counts: 1.5B parameters


def count(low: int, high: int | None = None):
    """An argparse type: a count from low to high, written as an integer, in scientific
    notation (1e8) or with a decimal unit (100M, 1.5B: K, M, G or B), as model sizes are
    quoted; one that is not a whole number is refused."""
    whole = integer(low, high)

    def parse(text: str) -> int:
        t = text.strip().upper().replace("_", "")
        scale = COUNT_UNITS.get(t[-1:], 1)
        try:
            value = float(t[:-1] if scale > 1 else t) * scale
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a count: {text!r} (e.g. 25557032, 1e8, 100M, 1.5B)"
            ) from None
        if not math.isfinite(value) or value != int(value):
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
        return whole(str(int(value)))

    return parse


def real(low: float, high: float = math.inf, low_open: bool = False):
    """An argparse type: a finite number from low (excluded when low_open) to high."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        above = low < value if low_open else low <= value
        if not (math.isfinite(value) and above and value <= high):
            bounds = f"{'>' if low_open else '>='} {low:g}"
            bounds += f" and <= {high:g}" if high < math.inf else ""
            raise argparse.ArgumentTypeError(f"must be a finite number {bounds}, got {text}")
        return value

    return parse


def byte_sizes(text: str) -> tuple[int, ...]:
    """'8,4K,64M' -> bytes (K, M, G: powers of 1024), each a positive multiple of 4 (float32
    buffers) up to MAX_BYTES; 'none' -> (). An argparse type, shared with the probe."""
    if text.strip().lower() == "none":
        return ()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    out = []
    for item in text.split(","):
        t = item.strip().upper().removesuffix("IB").removesuffix("B")
        try:
            n = int(t[:-1]) * units[t[-1]] if t and t[-1] in units else int(t)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a byte count: {item!r}") from None
        if not 4 <= n <= MAX_BYTES or n % 4:
            raise argparse.ArgumentTypeError(
                f"sizes must be positive multiples of 4 bytes up to 1024G, got {item!r}"
            )
        out.append(n)
    return tuple(out)

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

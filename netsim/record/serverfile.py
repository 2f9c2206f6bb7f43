"""A parameter server's file: one fixed-size record per fetch it answered and per push it
applied, written as each happens (--mode async, Downpour SGD).

Why its own file: a server has no steps. It waits for any replica's message, answers a
fetch with its shard, or applies a push to it; what a report needs of that is per event:
whose, which of that replica's fetches or pushes it was, the shard's version (updates
applied so far), the push's staleness (updates the shard applied since that replica last
fetched it), and when the message arrived and when it was done with. The replicas' own
view (bytes per step, how long each fetch and push waited) is in their step files.

The file is a header, then records, little-endian:
    u32 n, then n bytes of JSON: {"format": "allreduce_train server", "version": 1,
        "rank": R, "server": s, "shard": [lo, hi], "itemsize": B}, padded with spaces so
        that the records start at a multiple of 8 bytes
    records of RECORD (48 bytes): kind (FETCH 0, PUSH 1), replica, index (the replica's
        fetch or push number, from 0), version, staleness (0 for a fetch), t_recv_ns (the
        message seen: the server's clock, as a replica's step file), t_done_ns
Each record is one write() straight to the file (no buffer of ours), so a server that is
killed keeps every event it finished; a record cut short is left out by `read`.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from netsim.errors import InputError

FORMAT = {"format": "allreduce_train server", "version": 1}
FETCH, PUSH = 0, 1
RECORD = struct.Struct("<B3xiqqqqq")
DTYPE = np.dtype(
    {
        "names": ["kind", "replica", "index", "version", "staleness", "t_recv_ns", "t_done_ns"],
        "formats": ["u1", "<i4", "<i8", "<i8", "<i8", "<i8", "<i8"],
        "offsets": [0, 4, 8, 16, 24, 32, 40],
        "itemsize": RECORD.size,
    }
)
_LENGTH = struct.Struct("<I")


class ServerFileError(InputError):
    """A server file that is not one."""


def path(run_dir: str, rank: int) -> str:
    return os.path.join(run_dir, f"serves-rank{rank}.bin")


class ServerLog:
    """A server's file, open for its events."""

    def __init__(self, file: str, rank: int, server: int, shard: tuple[int, int], itemsize: int):
        self.path = file
        self.fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        head = dict(FORMAT, rank=rank, server=server, shard=list(shard), itemsize=itemsize)
        payload = json.dumps(head).encode()
        payload += b" " * (-(len(payload) + _LENGTH.size) % 8)
        self._write(_LENGTH.pack(len(payload)) + payload)

    def log(self, kind, replica, index, version, staleness, t_recv_ns, t_done_ns) -> None:
        self._write(RECORD.pack(kind, replica, index, version, staleness, t_recv_ns, t_done_ns))

    def _write(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)
        except OSError as exc:  # a full disk: name the file (one line, exit 9)
            raise OSError(exc.errno, exc.strerror, self.path) from None

    def close(self) -> None:
        os.close(self.fd)


def read(file: str) -> tuple[dict, np.ndarray]:
    """(header, events) of a server file; a last record cut short is left out."""
    try:
        with open(file, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ServerFileError(f"{file}: {exc.strerror}") from None
    try:
        (n,) = _LENGTH.unpack_from(raw)
        head = json.loads(raw[_LENGTH.size : _LENGTH.size + n])
    except (struct.error, ValueError):
        raise ServerFileError(f"{file}: not a server file (its header does not read)") from None
    if not isinstance(head, dict) or {k: head.get(k) for k in FORMAT} != FORMAT:
        raise ServerFileError(f"{file}: not a server file of format {FORMAT['version']}")
    body = raw[_LENGTH.size + n :]
    whole = len(body) // RECORD.size * RECORD.size
    return head, np.frombuffer(body[:whole], dtype=DTYPE).copy()

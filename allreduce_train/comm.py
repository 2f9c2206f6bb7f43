"""Everything MPI: the world, abort-on-error, agreement on errors, the transport.

This is the only module that imports mpi4py (a test reads the import graph to keep it so).
The rest of the program gets a `World` and a transport passed in, and asks them only for
what it needs, by typed methods (gather, allgather, sum, max, ...), so its maths runs under
plain pytest with no MPI at all and a test can hand it another transport. (Past 300 lines:
every MPI call of the program is here, by design.)
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass

import numpy as np

# mpi4py warns (several lines, every process) when the launcher's variables belong to
# another MPI; check_launcher turns that case into one clear error line instead.
warnings.filterwarnings("ignore", message="suspicious MPI execution environment")


# Launcher variables that say how many processes `mpirun` started, by MPI family.
# (SLURM_STEP_NUM_TASKS, not SLURM_NTASKS: the latter is set for a whole allocation, even
# for a plain `python` started inside it.)
_LAUNCHER_SIZE_VARS = (
    "PMI_SIZE",
    "OMPI_COMM_WORLD_SIZE",
    "MV2_COMM_WORLD_SIZE",
    "SLURM_STEP_NUM_TASKS",
)


def _one_node_job(env=os.environ) -> bool:
    """Whether every rank of this job runs on this node, as the launcher says (MPICH's hydra:
    MPI_LOCALNRANKS = PMI_SIZE; Open MPI: OMPI_COMM_WORLD_LOCAL_SIZE = OMPI_COMM_WORLD_SIZE),
    or no launcher started it (a singleton)."""
    if not any(name in env for name in _LAUNCHER_SIZE_VARS):
        return True
    return any(
        env.get(local) and env.get(local) == env.get(world)
        for local, world in (
            ("MPI_LOCALNRANKS", "PMI_SIZE"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_COMM_WORLD_SIZE"),
        )
    )


# A job on one node sends nothing over a network: MPI's shared memory carries every byte.
# There UCX (which the mpich wheel's libmpi links, as Open MPI's does) need not hook the
# process's memory calls for its RDMA registration cache, a hook that costs every rank 41 ms
# of CPU when libmpi loads (here: importing mpi4py 49 -> 8 ms, MPI_Init unchanged). Across
# nodes, or where the user set it, UCX runs as configured.
if _one_node_job():
    os.environ.setdefault("UCX_MEM_EVENTS", "no")

# mpi4py initialises MPI on import; keep that the first thing a rank does so that even a
# failing import or a bad argument later can still be reported by rank 0 only.
from mpi4py import MPI  # noqa: E402

from . import exits  # noqa: E402

PAUSE_S = 2e-4  # how long a patient wait sleeps between looks
SPIN_S = 2e-3  # how long a wait for a peer looks without sleeping, for latency


class Patience:
    """How a wait for peers spends its time. While the main thread computes (backward, with
    buckets in flight on the communication thread) a wait sleeps between looks and leaves
    the core to the compute it shares it with; MPICH's own wait spins, and on ranks that
    share their cores a spinning communication thread took half of backward's (measured:
    bench/README.md, "Buckets and overlap"). Once the main thread waits on communication
    itself (the exposed part) waits spin again, for latency, for their first SPIN_S: a wait
    longer than that is for a late, stopped or descheduled peer, and sleeps between looks
    too, leaving the cores to the ranks that have work (a rank stopped for a 4 s timeout had
    the others spin through it)."""

    def __init__(self):
        self.computing = False

    def pause(self, waited_s: float = 0.0) -> None:
        """One pause of a wait's loop that has waited `waited_s` so far: a short sleep while
        the main thread computes or past SPIN_S, else the core given to whoever else is
        ready (sched_yield)."""
        if self.computing or waited_s > SPIN_S:
            time.sleep(PAUSE_S)
        else:
            os.sched_yield()


PATIENCE = Patience()  # the process's: the bucket exchange sets it, every wait reads it


def _all_here(comm: MPI.Comm) -> None:
    """Returns once every rank of `comm` has called it: a barrier waited for between short
    sleeps, where MPI_Barrier spins. Measured (3 and 4 ranks on 2 cores, a 2-step run, 6
    alternated runs each): the CPU time of the job 19-21% less, its wall time 10-14% less."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(PAUSE_S)


@dataclass(frozen=True, eq=False)
class World:
    _comm: MPI.Comm  # only this module's: the rest of the program asks World's methods
    rank: int
    world_size: int
    local_rank: int  # rank among the processes on this node
    local_size: int
    hostnames: tuple[str, ...]  # processor name of every rank

    @classmethod
    def create(cls, comm: MPI.Comm = MPI.COMM_WORLD) -> World:
        _all_here(comm)  # (ranks start apart: imports, a loaded machine)
        local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
        hostnames = tuple(comm.allgather(MPI.Get_processor_name()))
        world = cls(comm, comm.rank, comm.size, local.rank, local.size, hostnames)
        local.Free()
        return world

    def shared_window(self, nbytes: int, node_of_rank: list[int]) -> NodeWindow:
        """Collective: a window of `nbytes` a rank over the ranks of this host that are in
        this rank's node of `node_of_rank` (pretend nodes stay apart)."""
        return NodeWindow(self, nbytes, node_of_rank[self.rank])

    def node_of_rank(self, ranks_per_node: int | None = None) -> list[int]:
        """Each rank's node: consecutive groups of `ranks_per_node` (a pretend layout), else
        the hosts in the order their first rank appears."""
        if ranks_per_node:
            return [r // ranks_per_node for r in range(self.world_size)]
        names = list(dict.fromkeys(self.hostnames))
        return [names.index(h) for h in self.hostnames]

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def log(self, message: str) -> None:
        """Progress output: rank 0 speaks for everyone, so output is not repeated p times."""
        if self.rank == 0:
            print(message, flush=True)

    # The control collectives below (not the gradient's: the transport's) first wait for
    # every rank without spinning (_all_here): before them one rank often works alone
    # (rank 0 choosing the all-reduce, loading and checking, writing the report) while the
    # others would spin in MPICH's wait, and where ranks share cores the spinning ranks take
    # the core from the rank they wait for.

    def agree_on_error(self, message: str | None) -> str | None:
        """Every rank learns the first error any rank hit (or None), so all can exit together
        instead of the healthy ranks waiting forever in the next collective."""
        _all_here(self._comm)
        errors = self._comm.allgather(message)
        return next((e for e in errors if e is not None), None)

    def bcast(self, value, root: int = 0):
        """A small Python value from `root` to every rank (pickled)."""
        _all_here(self._comm)
        return self._comm.bcast(value, root=root)

    def gather(self, value, root: int = 0) -> list | None:
        """Every rank's small Python value, in rank order, on `root` (None elsewhere)."""
        _all_here(self._comm)
        return self._comm.gather(value, root=root)

    def allgather(self, value) -> list:
        """Every rank's small Python value, in rank order, on every rank (pickled)."""
        _all_here(self._comm)
        return self._comm.allgather(value)

    def allgather_u64(self, value: int) -> np.ndarray:
        """Every rank's unsigned 64-bit value (weight digests), by a buffer call."""
        out = np.empty(self.world_size, dtype=np.uint64)
        self._comm.Allgather(np.array([value], dtype=np.uint64), out)
        return out

    def sum_(self, values: np.ndarray) -> np.ndarray:
        """In-place sum of a small host array over all ranks (evaluation counts, timings)."""
        self._comm.Allreduce(MPI.IN_PLACE, values, op=MPI.SUM)
        return values

    def max_(self, values: np.ndarray) -> np.ndarray:
        self._comm.Allreduce(MPI.IN_PLACE, values, op=MPI.MAX)
        return values

    def barrier(self) -> None:
        """All ranks leave together, as near as MPI can: the barrier before a timed round
        (MPI_Barrier, which spins; the control collectives wait patiently, above)."""
        self._comm.Barrier()

    def clock_offsets(self, clock, rounds: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """Offsets that put every rank's clock on rank 0's: global = local + offset[rank].

        Cristian's algorithm: rank 0 pings each rank in turn, the rank answers with its
        clock reading, and the reading is placed at the midpoint of the round trip. Of
        several round trips the shortest is kept; half of it bounds the error (returned as
        the second array). Clocks of one machine agree already; on several they do not.
        """
        offsets, errors = np.zeros(self.world_size), np.zeros(self.world_size)
        buf = np.zeros(1)
        for peer in range(1, self.world_size):
            if self.rank == 0:
                best = np.inf
                for _ in range(rounds):
                    t0 = clock()
                    self._comm.Send(buf, peer, _CLOCK_TAG)
                    self._comm.Recv(buf, peer, _CLOCK_TAG)
                    t1 = clock()
                    if t1 - t0 < best:
                        best, offsets[peer] = t1 - t0, (t0 + t1) / 2 - buf[0]
                errors[peer] = best / 2
            elif self.rank == peer:
                for _ in range(rounds):
                    self._comm.Recv(buf, 0, _CLOCK_TAG)
                    buf[0] = clock()
                    self._comm.Send(buf, 0, _CLOCK_TAG)
        self._comm.Bcast(offsets, root=0)
        self._comm.Bcast(errors, root=0)
        return offsets, errors


_CLOCK_TAG = 7001


class NodeWindow:
    """An MPI-3 shared-memory window (MPI_Win_allocate_shared) over the ranks of this node
    that share `color`: each rank's part is memory every one of them maps, read and written
    with plain loads and stores (exchange.shm). The window stays in a passive epoch for all
    its life, so that `sync` (MPI_Win_sync) is the memory barrier MPI's unified model asks
    for between a rank's stores and a peer's loads."""

    def __init__(self, world: World, nbytes: int, color: int):
        node = world._comm.Split_type(MPI.COMM_TYPE_SHARED, key=world.rank)
        self._comm = node.Split(color, key=world.rank)
        node.Free()
        self._win = MPI.Win.Allocate_shared(nbytes, 1, comm=self._comm)
        self._win.Lock_all(MPI.MODE_NOCHECK)
        self.ranks = self._comm.allgather(world.rank)  # world ranks, by window rank
        self._pids = dict(zip(self.ranks, self._comm.allgather(os.getpid())))
        self._memory = {r: self._win.Shared_query(i)[0] for i, r in enumerate(self.ranks)}

    def memory(self, rank: int):
        """World rank `rank`'s part of the window (a buffer NumPy can view)."""
        return self._memory[rank]

    def sync(self) -> None:
        self._win.Sync()

    def pause(self, waited_s: float = 0.0) -> None:
        """One pause of a wait for a peer's counter (Patience: the process's)."""
        PATIENCE.pause(waited_s)

    def alive(self, rank: int) -> bool:
        """Whether world rank `rank`'s process still runs (it is on this node)."""
        try:
            os.kill(self._pids[rank], 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, another user's
            pass
        return True

    def free(self) -> None:
        self._win.Unlock_all()
        self._win.Free()
        self._comm.Free()


class MpiTransport:
    """The executor's transport over MPI (exchange.protocol.Transport is the contract): point-to-
    point messages on contiguous buffers, by buffer calls (no pickling)."""

    def __init__(self, world: World):
        # A private communicator keeps collective traffic apart from anything else on
        # COMM_WORLD (evaluation, checksums), whatever tags either side uses.
        self._comm = world._comm.Dup()
        self._persistent: list = []  # prepare()'s requests, freed with the communicator

    def exchange(self, sends, recvs, tag: int = 0) -> None:
        """sends: [(dst, view)], recvs: [(src, view)]; returns when all have completed
        (MPI_Irecv, MPI_Isend, then a patient wait: _wait). A failure names the peers
        (PeerLost)."""
        try:
            requests = [self._comm.Irecv(buf, src, tag) for src, buf in recvs]
            requests += [self._comm.Isend(buf, dst, tag) for dst, buf in sends]
            _wait(requests)
        except MPI.Exception as exc:
            _peer_lost(exc, sends, recvs)

    def prepare(self, sends, recvs, tag: int = 0):
        """The same exchange on these same views, made once and run many times: persistent
        requests (MPI_Send_init, MPI_Recv_init; one MPI_Startall and a patient wait, _wait,
        a call). Measured on 2 ranks (bench/README.md), with MPI_Waitall: 0.4-0.9 us less
        per round than Sendrecv, which in turn beat Isend/Irecv/Waitall by 1.3 us; at 4 KiB
        that is the difference between behind and ahead of MPI_Allreduce. Returns a
        callable of no arguments."""
        comm = self._comm
        requests = [comm.Recv_init(buf, src, tag) for src, buf in recvs]
        requests += [comm.Send_init(buf, dst, tag) for dst, buf in sends]
        self._persistent += requests
        if not requests:
            return _nothing
        start = MPI.Prequest.Startall

        def run() -> None:
            try:
                start(requests)
                _wait(requests)
            except MPI.Exception as exc:
                _peer_lost(exc, sends, recvs)

        return run

    def probe(self) -> tuple[int, int]:
        """(source, tag) of the next message to arrive from anyone (a parameter server's
        wait): it stays to be received by `exchange`."""
        status = MPI.Status()
        try:
            self._comm.Probe(MPI.ANY_SOURCE, MPI.ANY_TAG, status)
        except MPI.Exception as exc:
            if not lost(exc):
                raise
            raise exits.PeerLost(f"waiting for the replicas: {one_line(exc)}") from None
        return status.Get_source(), status.Get_tag()

    def isend(self, sends, tag: int = 0):
        """sends: [(dst, view)], started and not waited for (MPI_Isend); the views are read
        until they complete. Returns wait(patience_s=None) -> whether they have completed:
        it waits for them, or with patience_s at most that long."""
        try:
            requests = [self._comm.Isend(buf, dst, tag) for dst, buf in sends]
        except MPI.Exception as exc:
            _peer_lost(exc, sends, [])

        def wait(patience_s: float | None = None) -> bool:
            try:
                if patience_s is None:
                    _wait(requests)
                    return True
                return _test_for(requests, patience_s)
            except MPI.Exception as exc:
                _peer_lost(exc, sends, [])

        return wait

    def inbox(self, buffers: dict) -> Inbox:
        """A receive of any tag posted from every source of `buffers` ({rank: array}) into
        its array's bytes: a parameter server's, which takes whichever message is in first
        and waits on no one peer (Inbox)."""
        return Inbox(self._comm, buffers)

    def iprobe(self, source: int, tag: int) -> bool:
        """Whether a message of `tag` from `source` waits to be received (not waiting for
        one: a replica's look for a stop notice, under a microsecond)."""
        return self._comm.Iprobe(source, tag)

    def native_allreduce(self, buf) -> None:
        """MPI_Allreduce in place: the library's own algorithm, the naive sibling."""
        self._comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

    def free(self) -> None:
        for request in self._persistent:
            request.Free()
        self._persistent = []
        self._comm.Free()


def _nothing() -> None:
    pass


class Inbox:
    """One receive of any tag posted per source, into that source's buffer (as bytes:
    whatever a message holds, a 0-byte request, a gradient, a pair of integers). `next`
    takes a message that is in (MPI_Testsome: every source with one in gets its turn before
    any gets another); `again` posts the source's receive anew once its message is handled.
    One receive at a time per source takes its messages in the order they were sent (MPI's
    non-overtaking rule), and a source that sends nothing, or stopped halfway through a
    message, holds up no other source."""

    def __init__(self, comm: MPI.Comm, buffers: dict):
        self._comm, self._sources = comm, list(buffers)
        self._index = {src: i for i, src in enumerate(self._sources)}
        self._buffers = [np.asarray(b).reshape(-1).view(np.uint8) for b in buffers.values()]
        self._requests = [MPI.REQUEST_NULL] * len(self._sources)
        self._statuses = [MPI.Status() for _ in self._sources]
        self._in: list = []  # (source, tag, bytes) of the messages in, not yet taken
        for src in self._sources:
            self.again(src)

    def again(self, source: int) -> None:
        """Post source's receive again (its buffer may be written from now on)."""
        i = self._index[source]
        self._requests[i] = self._comm.Irecv([self._buffers[i], MPI.BYTE], source, MPI.ANY_TAG)

    def next(self) -> tuple[int, int, int]:
        """(source, tag, bytes) of a message in, waiting until one is if none is: its bytes
        lie at the start of the source's buffer, whose receive stays unposted until `again`."""
        if not self._in:
            try:  # MPI_Testsome until one is in ([]: none yet; None: none posted)
                done = _patiently(
                    lambda: (d := MPI.Request.Testsome(self._requests, self._statuses)) != [] and d
                )
            except MPI.Exception as exc:
                if not lost(exc):
                    raise
                raise exits.PeerLost(f"waiting for the replicas: {one_line(exc)}") from None
            if done is None:
                raise RuntimeError("Inbox.next: no receive is posted")
            self._in = [(self._sources[i], s.Get_tag(), s.Get_count(MPI.BYTE))
                        for i, s in zip(done, self._statuses)][::-1]  # fmt: skip
        return self._in.pop()

    def close(self, patience_s: float = 1.0) -> None:
        """Cancel the receives still posted. One whose message a stopped peer left half
        sent may never complete: it is left after patience_s rather than waited for."""
        live = [r for r in self._requests if r != MPI.REQUEST_NULL]
        for request in live:
            request.Cancel()
        _test_for(live, patience_s)
        self._requests = [MPI.REQUEST_NULL] * len(self._sources)


def _patiently(test):
    """test()'s first answer that is not False, asked between Patience's pauses: how every
    wait of the transport spends its time, where MPICH's own wait spins (measured in
    bench/README.md, "Waits that leave the cores to the work": a Downpour replica spinning
    for its fetch held the server's core)."""
    answer = test()
    if answer is False:
        pause, now = PATIENCE.pause, time.monotonic
        begun = now()
        while (answer := test()) is False:
            pause(now() - begun)
    return answer


def _wait(requests: list) -> None:
    """MPI_Waitall, waited for patiently (MPI_Testall between pauses)."""
    _patiently(lambda: MPI.Request.Testall(requests))


def _test_for(requests: list, patience_s: float) -> bool:
    """Whether `requests` complete within patience_s (MPI_Testall, every millisecond)."""
    deadline = time.monotonic() + patience_s
    while not MPI.Request.Testall(requests):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)
    return True


def _peer_lost(exc, sends, recvs):
    if not lost(exc):
        raise exc  # a bug of ours (a wrong size, a bad rank): its traceback
    peers = sorted({peer for peer, _ in [*sends, *recvs]})
    raise exits.PeerLost(
        f"the exchange with rank{'s' * (len(peers) > 1)} {', '.join(map(str, peers))} "
        f"failed: {one_line(exc)} (its process ended?)"
    ) from None


class Agreement:
    """Whether any rank raised a flag (a signal came): `now` at once, or `post`, which reads
    the previous post's MAX (long done) and starts the next. Every rank posts at the same
    steps, so every rank reads the same answer after the same step."""

    def __init__(self, world: World):
        self._comm = world._comm.Dup()
        self._mine, self._all = np.zeros(1, np.int32), np.zeros(1, np.int32)
        self._request = None

    def post(self, flag: int) -> int:
        got = 0
        if self._request is not None:
            self._request.Wait()
            got = int(self._all[0])
        self._mine[0] = flag
        self._request = self._comm.Iallreduce(self._mine, self._all, op=MPI.MAX)
        return got

    def now(self, flag: int) -> int:
        """The MAX of every rank's flag, now (blocking: for steps long enough not to mind)."""
        self.close()
        self._mine[0] = flag
        self._comm.Allreduce(self._mine, self._all, op=MPI.MAX)
        return int(self._all[0])

    def close(self) -> None:
        if self._request is not None:
            self._request.Wait()
            self._request = None


class WatchChannel:
    """The watchdogs' own messages: small pickled tuples on a communicator of their own,
    sent without blocking, received by polling; MPI_THREAD_MULTIPLE (mpi4py's default) lets
    the watchdog's thread use it while the main thread waits in a collective."""

    _TAG = 7002

    def __init__(self, world: World):
        self._comm = world._comm.Dup()
        self._pending: list = []

    def send(self, dst: int, message) -> None:
        self._pending = [r for r in self._pending if not r.Test()]
        self._pending.append(self._comm.isend(message, dst, self._TAG))

    def poll(self) -> list:
        got, status = [], MPI.Status()
        while self._comm.iprobe(MPI.ANY_SOURCE, self._TAG, status):
            got.append((status.Get_source(), self._comm.recv(None, status.Get_source(), self._TAG)))
        return got

    def abort(self, code: int) -> None:
        abort(code)


def abort(code: int) -> None:
    """End every rank with exit code `code` (MPI_Abort), once our own line is out: MPICH's
    "Abort(code) on node ..." line would only repeat it, so stderr goes quiet first."""
    sys.stderr.flush()
    time.sleep(0.5)  # mpiexec forwards our output through pipes: give it time to, first
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    MPI.COMM_WORLD.Abort(code)


# MPI's error classes for a peer gone (MPICH reports a dead process's broken channel as
# ERR_OTHER); the others (a truncated message, a bad rank) are bugs of ours.
_LOST = {MPI.ERR_OTHER} | {
    getattr(MPI, name) for name in ("ERR_PROC_FAILED", "ERR_REVOKED") if hasattr(MPI, name)
}


def lost(exc) -> bool:
    return exc.Get_error_class() in _LOST


def one_line(exc) -> str:  # MPICH's error stacks span lines
    return " ".join(exc.Get_error_string().split())


def install_abort_hook(comm: MPI.Comm = MPI.COMM_WORLD) -> None:
    """An uncaught exception on any rank ends every rank (MPI_Abort: the launcher kills
    them all, measured: 4 ranks gone within 0.4 s), where without it the others would block
    in the next collective for ever. What it says and the exit code: exits.classify."""

    def hook(exc_type, exc, tb):
        mpi_lost = issubclass(exc_type, MPI.Exception) and lost(exc)
        code, line, show = exits.classify(exc_type, exc, one_line(exc) if mpi_lost else None)
        if show:
            sys.stderr.write("".join(traceback.format_exception(exc_type, exc, tb)))
        if line is not None and (code != exits.INTERRUPTED or comm.rank == 0):
            sys.stderr.write(f"allreduce_train: error: rank {comm.rank}: {line}\n")
        abort(code)

    sys.excepthook = hook


def check_launcher(world_size: int) -> str | None:
    """The classic silent failure: `mpirun` from one MPI, mpi4py built on another. Each
    process then believes it is alone and trains on its own. Say so instead."""
    for var in _LAUNCHER_SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 1 and world_size == 1:
            return (
                f"the launcher started {value} processes ({var}={value}) but mpi4py sees a "
                f"world of 1: mpirun and mpi4py belong to different MPI libraries "
                f"(mpi4py uses {library_version()}); use the mpirun that comes with it"
            )
    return None


def cuda_aware() -> bool | None:
    """Whether the MPI library says it moves CUDA device memory (MPIX_Query_cuda_support,
    which MPICH and Open MPI both export); None: it cannot say (no such function)."""
    try:
        query = ctypes.CDLL(MPI.__file__).MPIX_Query_cuda_support  # libmpi, through mpi4py
    except (OSError, AttributeError):
        return None
    return bool(query())


def library_version() -> str:
    return " ".join(MPI.Get_library_version().split("\n")[0].split())


def wtime() -> float:
    return MPI.Wtime()

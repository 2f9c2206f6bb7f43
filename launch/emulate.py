"""A multi-node cluster on one machine whose network is real: TCP over capped veth links.

    python -m launch.emulate --topology T [--nodes K] [--ranks-per-node G] -- TRAINING ARGS
    python -m launch.emulate --cleanup

builds K emulated nodes of a topology, a TOML file or a preset's name read and checked by
netsim's own loader (netsim.cluster.topology: its keys, checks and presets, so the cluster
emulated is the one netsim models), as launch.netns lays them out: a network namespace per
node, bridges, veth links capped by tbf at the node's NIC rate, count x
bandwidth_gbit_per_s, and a fat-tree's oversubscribed leaf uplinks. It starts MPICH's Hydra
in node 0 with `-launcher ssh -launcher-exec WRAPPER` (launch.hop: each "host" is a
namespace with its own host name), runs `python -m allreduce_train ARGS` on G ranks per
node, and always removes every namespace, link, bridge and process it made: on success, on
failure, on Ctrl-C and on SIGTERM. SIGINT and SIGTERM are passed on to Hydra, which passes
them to every rank, so the ranks agree on a step and checkpoint as under mpirun; a second
one ends the job at once. A watcher process of its own session holds the read end of a
pipe from the emulator: if the emulator dies without saying it cleaned up (kill -9), the
watcher kills every process in its namespaces, deletes them and removes the emulator's
temporary directory. `--cleanup` removes what a killed earlier run left when its watcher
was killed too: namespaces and temporary directories whose emulator is gone.

Inside a node MPICH's ranks talk through shared memory, as on a real host; between nodes
UCX is held to TCP (UCX_TLS=tcp,self: otherwise UCX, which sees one machine, would use
shared memory across namespaces too) on eth0. Links add no latency (no netem in this
kernel). After the run the qdisc counters of every link go into RUN_DIR/network.json
beside the emulated network's description, and are printed against the inter-node bytes
the recorder counted: the difference is protocol overhead (TCP/IP headers, MPI envelopes,
acknowledgements, the run's own small collectives). Needs root, `ip` and `tc`.
(Past 300 lines: one emulation's whole life, from the network up to the cleanup after a
kill, is here, so that what it makes and what removes it are read side by side.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netsim.cluster import topology as topologies

from . import hop, netns
from .local import mpiexec

UCX_ENV = {"UCX_TLS": "tcp,self", "UCX_NET_DEVICES": "eth0", "UCX_RNDV_THRESH": "inf"}


TMP_PREFIX = "atr-emulate-"  # + the emulator's pid + "-": its temporary directory


class Stop(Exception):
    """A signal that ends the emulation at once (before the job runs, or a second one),
    raised in the main thread, so that `finally` cleans up: by the handler before the job
    runs, and from then on by the loop that waits for the job (an exception out of Popen's
    wait could leave the lock it waits under held, and the cleanup's wait hung for good)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def read_topology(name: str) -> tuple[Path, dict]:
    """The file `name` stands for (a path, or a netsim preset's name) and its description as
    netsim's loader checked it; a bad one is a ValueError naming the key (netsim's
    TopologyError)."""
    path = topologies.resolve(name)
    return path, topologies.load(str(path)).spec


def plan_of(spec: dict, nodes: int | None, rate_mbit: float | None, mtu: int, tag: str):
    """The emulated network of a topology (its checked description, read_topology's): its
    first `nodes` nodes, each link at the node's NIC rate (or rate_mbit), leaves and uplinks
    as a fat-tree's."""
    total, nic, network = spec["nodes"], spec.get("nic"), spec.get("network", {})
    if not rate_mbit and nic is None:  # netsim asks for a [nic] only when nodes > 1
        raise ValueError("the topology has no [nic] to set the links' rate: give --rate-mbit")
    node_mbit = rate_mbit or nic["count"] * nic["bandwidth_gbit_per_s"] * 1000.0
    fat_tree = network.get("kind") == "fat-tree"
    per_leaf = network["nodes_per_leaf"] if fat_tree else total
    over = network["oversubscription"] if fat_tree else 1.0
    k = total if nodes is None else nodes
    if not 1 <= k <= total:
        raise ValueError(f"--nodes must be 1 to the topology's {total} nodes, got {k}")
    per_leaf = max(1, min(per_leaf, k))
    uplink = per_leaf * node_mbit / over if per_leaf < k else None
    return netns.Plan(f"{netns.OWNED}{tag}", k, node_mbit, per_leaf, uplink, mtu)


def hydra_argv(plan, ranks_per_node: int, hostfile: Path, wrapper: Path, command: list[str]):
    """Hydra's argv, run in node 0 as node0 by the WRAPPER, so on node 0's CPUs: Hydra starts
    node 0's ranks itself, not through the WRAPPER."""
    env = [x for name, value in UCX_ENV.items() for x in ("-genv", name, value)]
    hydra = [*mpiexec(), "-launcher", "ssh", "-launcher-exec", str(wrapper), "-f", str(hostfile)]
    hydra += ["-iface", "eth0", *env, "-n", str(plan.nodes * ranks_per_node), *command]
    return [str(wrapper), plan.host(0), *map(shlex.quote, hydra)]


def check_machine() -> None:
    if os.geteuid() != 0:
        raise ValueError("an emulated cluster needs root (network namespaces, tc)")
    for tool in ("ip", "tc", "unshare"):
        if shutil.which(tool) is None:
            raise ValueError(f"an emulated cluster needs `{tool}`, which is not on PATH")


def _bounded(kind, low, high=math.inf, what="a number"):
    """An argparse type: `kind` (int or float) from low to high, finite (NaN refused)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            top = "" if high == math.inf else f" and at most {high:g}"
            raise argparse.ArgumentTypeError(f"must be at least {low:g}{top}, got {text}")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (no usage block), exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="python -m launch.emulate",
        description=__doc__.splitlines()[0],
        epilog="Everything after -- goes to python -m allreduce_train (or, with --exec, is "
        "the command itself).",
    )
    ap.add_argument("--topology", help="a topology TOML file, or a netsim preset's name")
    count = _bounded(int, 1, what="an integer")
    ap.add_argument("--nodes", type=count, help="emulate this many of its nodes (default: all)")
    ap.add_argument("--ranks-per-node", type=count, help="default: the topology's gpus_per_node")
    ap.add_argument(
        "--rate-mbit",
        type=_bounded(float, 1e-3, 1e9),
        help="each node's link, Mbit/s each way (default: the topology's NIC count x rate)",
    )
    # Linux's bounds for an IPv4 interface and a veth pair
    ap.add_argument("--mtu", type=_bounded(int, 68, 65535, "an integer"), default=1500,
                    help="(default: %(default)s)")  # fmt: skip
    ap.add_argument(
        "--timeout",
        type=_bounded(float, 1e-3, 1e7),
        default=3600.0,
        metavar="S",
        help="end the job after S seconds (default: %(default)s)",
    )
    ap.add_argument("--exec", action="store_true", help="run the command after -- as it is")
    ap.add_argument(
        "--cleanup",
        action="store_true",
        help=f"remove the namespaces ({netns.OWNED}PID-*) and temporary directories "
        f"({tempfile.gettempdir()}/{TMP_PREFIX}PID-*) of emulators that are gone, and exit",
    )
    ap.add_argument("args", nargs=argparse.REMAINDER)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    rest = args.args[1:] if args.args[:1] == ["--"] else args.args
    try:
        check_machine()
        if args.cleanup:
            removed = [name for prefix in netns.stale() for name in netns.down(prefix)]
            print(f"removed {len(removed)} namespaces{': ' if removed else ''}{' '.join(removed)}")
            dirs = stale_dirs()
            for path in dirs:
                shutil.rmtree(path, ignore_errors=True)
            print(
                f"removed {len(dirs)} temporary directories{': ' if dirs else ''}"
                + " ".join(map(str, dirs))
            )
            return 0
        if not args.topology:
            raise ValueError("--topology is required")
        path, spec = read_topology(args.topology)
        plan = plan_of(spec, args.nodes, args.rate_mbit, args.mtu, str(os.getpid()))
        per_node = args.ranks_per_node or spec["gpus_per_node"]
        if per_node < 1:
            raise ValueError(f"--ranks-per-node must be >= 1, got {per_node}")
    except ValueError as exc:
        print(f"python -m launch.emulate: error: {exc}", file=sys.stderr)
        return 2
    run_dir, command = None, rest
    if not args.exec:
        run_dir = given_run_dir(rest)
        if run_dir is None:  # ours, last, so that training takes it
            stamp = time.strftime("%Y%m%d-%H%M%S")
            run_dir = Path("runs") / f"{stamp}-emu{plan.nodes}x{per_node}"
            rest = [*rest, "--run-dir", str(run_dir)]
        command = [sys.executable, "-m", "allreduce_train", *rest]
    return emulate(plan, per_node, command, run_dir, path, args.timeout)


def given_run_dir(args: list[str]) -> Path | None:
    """The --run-dir among the training arguments (the last, as argparse takes it)."""
    found = None
    for i, arg in enumerate(args):
        if arg == "--run-dir" and i + 1 < len(args):
            found = Path(args[i + 1])
        elif arg.startswith("--run-dir="):
            found = Path(arg.split("=", 1)[1])
    return found


def stale_dirs() -> list[Path]:
    """The temporary directories of emulators whose process has ended."""
    out = []
    for path in sorted(Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*")):
        tag = path.name[len(TMP_PREFIX) :].split("-")[0]
        if path.is_dir() and tag.isdigit() and not netns.alive(int(tag)):
            out.append(path)
    return out


def start_watcher(prefix: str, tmp: str) -> tuple[subprocess.Popen, int]:
    """The watcher (netns.watch) of this emulation, in a session of its own so that no signal
    to ours reaches it, and the write end of its pipe: closed by our death, or told "done"."""
    read, write = os.pipe()
    home = str(Path(__file__).resolve().parent.parent)
    code = (
        f"import sys; sys.path.insert(0, {home!r}); from launch.netns import watch; "
        f"watch({prefix!r}, [{tmp!r}])"
    )
    try:
        watcher = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=read,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
    except BaseException:
        os.close(write)
        raise
    finally:
        os.close(read)
    return watcher, write


def emulate(
    plan, per_node: int, command: list[str], run_dir, topology: Path, timeout_s: float
) -> int:
    """Build the network, run the job, report the links, and remove it all, whatever happens.
    The first SIGINT or SIGTERM while the job runs goes on to Hydra (and so to every rank,
    which checkpoints and stops); one before it, or a second one, ends everything at once."""
    job: dict = {"proc": None, "signal": 0, "stop": 0}

    def on_signal(signum, frame):
        proc = job["proc"]
        if proc is None:
            raise Stop(signum)
        if job["signal"] or proc.poll() is not None:
            job["stop"] = job["stop"] or signum  # for the waiting loop (Stop) to act on
            return
        job["signal"] = signum
        try:
            os.kill(proc.pid, signum)  # Hydra's mpiexec, which passes it to every rank
        except ProcessLookupError:
            pass
        print(
            f"python -m launch.emulate: {signal.Signals(signum).name} passed to the ranks: they"
            " checkpoint and stop (send it again to end them at once)",
            file=sys.stderr,
            flush=True,
        )

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, on_signal) for s in handled}
    rc = 1
    tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")
    watcher, told = None, None
    try:
        watcher, told = start_watcher(f"{plan.prefix}-", tmp)
        try:
            netns.up(plan)
            hostfile, wrapper = Path(tmp) / "hosts", Path(tmp) / "ssh"
            hostfile.write_text("".join(f"{plan.host(i)}:{per_node}\n" for i in range(plan.nodes)))
            hosts = [plan.host(i) for i in range(plan.nodes)]
            cpus = hop.split_cpus(plan.nodes, os.sched_getaffinity(0))
            wrapper.write_text(
                hop.script(
                    {h: plan.node_ns(i) for i, h in enumerate(hosts)}, dict(zip(hosts, cpus))
                )
            )
            wrapper.chmod(0o755)
            latency = netns.tcp_latency_us(plan) if plan.nodes > 1 else None
            ranks, cores = plan.nodes * per_node, os.cpu_count() or 1
            if ranks > cores:
                print(
                    f"python -m launch.emulate: warning: {ranks} ranks on {cores} cores: the "
                    "nodes share CPUs, so their compute is slower than separate machines' "
                    "(netsim replay models it)",
                    file=sys.stderr,
                )
            print(
                f"emulated cluster: {plan.nodes} nodes x {per_node} ranks, links "
                f"{plan.node_mbit:g} Mbit/s each way"
                + (f", leaf uplinks {plan.uplink_mbit:g} Mbit/s" if plan.uplink_mbit else "")
                + (f"; TCP one-way {latency:.1f} us" if latency else "")
                + f" (namespaces {plan.prefix}-*)",
                flush=True,
            )
            # a new session: Ctrl-C at a terminal reaches us alone, and Hydra once, from us
            job["proc"] = proc = subprocess.Popen(
                hydra_argv(plan, per_node, hostfile, wrapper, command), start_new_session=True
            )
            deadline = time.monotonic() + timeout_s
            while not job["stop"]:
                try:
                    rc = proc.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        print(
                            f"python -m launch.emulate: the job ran past {timeout_s:g} s; ended",
                            file=sys.stderr,
                        )
                        rc = 124
                        break
            stopped(job)
            if job["signal"]:
                print(
                    "python -m launch.emulate: interrupted; the ranks have ended; removing the"
                    " emulated cluster",
                    file=sys.stderr,
                )
            links = netns.counters(plan)
            stopped(job)
            if run_dir is not None and Path(run_dir).is_dir():
                write_network(Path(run_dir), plan, per_node, topology, links, latency, cpus)
            print(link_text(links, run_dir))
        except (KeyboardInterrupt, Stop) as exc:
            signum = exc.signum if isinstance(exc, Stop) else signal.SIGINT
            rc = 128 + signum
            print(
                "python -m launch.emulate: interrupted; removing the emulated cluster",
                file=sys.stderr,
            )
        except OSError as exc:
            print(f"python -m launch.emulate: error: {exc}", file=sys.stderr)
            rc = 1
    finally:
        for s in handled:  # another signal must not stop the cleanup
            signal.signal(s, signal.SIG_IGN)
        proc = job["proc"]
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        netns.down(f"{plan.prefix}-")
        shutil.rmtree(tmp, ignore_errors=True)
        if watcher is not None:
            os.write(told, b"done")  # cleaned up: the watcher has nothing to do
            os.close(told)
            watcher.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return rc


def stopped(job: dict) -> None:
    """Raise Stop if a signal that ends the emulation at once came while the job ran."""
    if job["stop"]:
        raise Stop(job["stop"])


def write_network(run_dir: Path, plan, per_node, topology, links, latency, cpus) -> None:
    emulated = {
        "topology": str(topology),
        "nodes": plan.nodes,
        "ranks_per_node": per_node,
        "node_mbit_per_s": plan.node_mbit,
        "nodes_per_leaf": plan.nodes_per_leaf,
        "uplink_mbit_per_s": plan.uplink_mbit,
        "mtu": plan.mtu,
        "tcp_latency_us": latency,  # one way, 1 byte, node 0 to node 1 (netns.tcp_latency_us)
        "transport": "MPICH shared memory inside a node, UCX TCP between nodes",
        "node_cpus": cpus,  # each node's processes run on these (launch.hop.split_cpus)
    }
    tmp = run_dir / "network.json.tmp"
    tmp.write_text(
        json.dumps({"emulated": emulated, "links": links}, indent=2, allow_nan=False) + "\n"
    )
    tmp.replace(run_dir / "network.json")


def link_text(links: list[dict], run_dir) -> str:
    up = sum(
        link["bytes"]
        for link in links
        if link["link"].startswith("node") and link["link"].endswith(".up")
    )
    lines = [f"emulated links: {up:,} bytes left the nodes (qdisc counters)"]
    summary = Path(run_dir) / "summary.json" if run_dir is not None else None
    if summary is not None and summary.is_file():
        recorded = json.loads(summary.read_text()).get("traffic", {}).get("inter_node_bytes")
        if recorded:
            lines.append(
                f"  the recorder's inter-node bytes: {recorded:,}; on the wire {up / recorded:.3f}x"
                " (TCP/IP headers, MPI envelopes, acks, the run's own small collectives)"
            )
    for link in links:
        lines.append(
            f"    {link['link']:<20} {link['bytes']:>14,} B {link['packets']:>10,} packets"
            f"  dropped {link['drops']}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

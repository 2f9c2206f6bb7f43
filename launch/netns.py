"""An emulated cluster's network on this machine: network namespaces joined by veth links
through Linux bridges, every link's rate capped by a tbf qdisc.

    node0 ns            switch ns                         node1 ns
    eth0 (198.18.0.1) =veth= n0 -[bridge leaf0]- n1 =veth= eth0 (198.18.0.2)
     tbf: node0.up          tbf: node0.down   node1.down      tbf: node1.up

Node i is namespace PREFIX-nI with its own loopback and one interface, eth0, whose peer
sits in the switch namespace PREFIX-sw on the bridge of its leaf. A tbf on eth0 caps what
the node sends (nodeI.up), one on the peer what it receives (nodeI.down). With more nodes
than a leaf holds, leaves meet on a spine bridge through one veth each, capped both ways
at (nodes per leaf x node rate / oversubscription): a fat-tree's oversubscribed uplink.

Everything lives inside namespaces named PREFIX-..., which nothing else on the machine
uses: the addresses (198.18.0.0/15, the range RFC 2544 reserves for benchmarking) exist
only on these links, the switch namespace routes nothing, and no packet can leave the
machine. Deleting the namespaces deletes every veth and bridge in them; `down` first
kills every process still inside, so nothing made here outlives it. `netem` is not in
this kernel, so links add no latency: the latency a model needs comes from calibration.
(Past 300 lines: the network, its counters, its latency and its removal, watcher included,
are one thing; split, the names they share would be in two places.)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass

OWNED = "atr-"  # every namespace this module makes starts so: what --cleanup removes
SUBNET_BITS = 15  # 198.18.0.0/15


@dataclass(frozen=True)
class Plan:
    """The network of one emulated cluster, as data: nodes, rates and names."""

    prefix: str  # OWNED + a tag of this run
    nodes: int
    node_mbit: float  # each node's link, each way
    nodes_per_leaf: int  # nodes on one leaf bridge (all: one switch)
    uplink_mbit: float | None = None  # a leaf's link to the spine, each way
    mtu: int = 1500

    def __post_init__(self):
        if not self.prefix.startswith(OWNED):
            raise ValueError(f"namespace prefix must start with {OWNED!r}, got {self.prefix!r}")
        if not 1 <= self.nodes <= 500:
            raise ValueError(f"emulated nodes must be 1 to 500, got {self.nodes}")
        if not self.node_mbit > 0 or (self.uplink_mbit is not None and not self.uplink_mbit > 0):
            raise ValueError("link rates must be positive")

    def node_ns(self, i: int) -> str:
        return f"{self.prefix}-n{i}"

    @property
    def switch_ns(self) -> str:
        return f"{self.prefix}-sw"

    @staticmethod
    def host(i: int) -> str:
        return f"node{i}"

    @staticmethod
    def address(i: int) -> str:
        return f"198.18.{(i + 1) // 256}.{(i + 1) % 256}"

    @property
    def leaves(self) -> int:
        return math.ceil(self.nodes / self.nodes_per_leaf)

    def links(self) -> list[tuple[str, str, str, float]]:
        """(link name, namespace, device, Mbit/s) of every capped direction."""
        out = []
        for i in range(self.nodes):
            out.append((f"node{i}.up", self.node_ns(i), "eth0", self.node_mbit))
            out.append((f"node{i}.down", self.switch_ns, f"n{i}", self.node_mbit))
        if self.leaves > 1:
            for j in range(self.leaves):
                out.append((f"leaf{j}.spine.up", self.switch_ns, f"l{j}u", self.uplink_mbit))
                out.append((f"leaf{j}.spine.down", self.switch_ns, f"l{j}d", self.uplink_mbit))
        return out

    def commands(self) -> list[list[str]]:
        """The ip and tc commands that build this network, in order."""
        sw, cmds = self.switch_ns, []
        cmds += [
            ["ip", "netns", "add", sw],
            *quiet(sw),
            ["ip", "-n", sw, "link", "set", "lo", "up"],
        ]
        bridges = [f"leaf{j}" for j in range(self.leaves)] + (["spine"] if self.leaves > 1 else [])
        for br in bridges:
            cmds += [
                ["ip", "-n", sw, "link", "add", br, "type", "bridge"],
                ["ip", "-n", sw, "link", "set", br, "up"],
            ]
        for j in range(self.leaves if self.leaves > 1 else 0):
            up, down = f"l{j}u", f"l{j}d"
            cmds += [
                ["ip", "-n", sw, "link", "add", up, "type", "veth", "peer", "name", down],
                ["ip", "-n", sw, "link", "set", up, "master", f"leaf{j}", "mtu", str(self.mtu)],
                ["ip", "-n", sw, "link", "set", down, "master", "spine", "mtu", str(self.mtu)],
                ["ip", "-n", sw, "link", "set", up, "up"],
                ["ip", "-n", sw, "link", "set", down, "up"],
            ]
        for i in range(self.nodes):
            ns, port = self.node_ns(i), f"n{i}"
            leaf = f"leaf{i // self.nodes_per_leaf}"
            cmds += [
                ["ip", "netns", "add", ns],
                *quiet(ns),
                ["ip", "-n", ns, "link", "set", "lo", "up"],
                ["ip", "link", "add", "eth0", "netns", ns, "type", "veth"]
                + ["peer", "name", port, "netns", sw],
                ["ip", "-n", sw, "link", "set", port, "master", leaf, "mtu", str(self.mtu)],
                ["ip", "-n", sw, "link", "set", port, "up"],
                ["ip", "-n", ns, "link", "set", "eth0", "mtu", str(self.mtu)],
                ["ip", "-n", ns, "addr", "add", f"{self.address(i)}/{SUBNET_BITS}", "dev", "eth0"],
                ["ip", "-n", ns, "link", "set", "eth0", "up"],
            ]
        for _, ns, dev, mbit in self.links():
            cmds.append(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    dev,
                    "root",
                    *tbf(mbit, self.mtu),
                ]
            )
        return cmds


def quiet(ns: str) -> list[list[str]]:
    """No IPv6 in the namespace: its router solicitations would be counted as traffic."""
    return [
        ["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{k}.disable_ipv6=1"]
        for k in ("all", "default")
    ]


def tbf(mbit: float, mtu: int = 1500) -> list[str]:
    """A token bucket at `mbit` whose bucket holds 4 frames or 500 us at the rate, whichever
    is more: small, so that the idle time between all-reduces does not fill it into a burst
    above the rate (tbf cuts a veth's 64 KiB segments into frames that fit); up to 100 ms
    queue."""
    burst = max(4 * (mtu + 14), int(mbit * 1e6 / 8 * 500e-6))
    return ["tbf", "rate", f"{mbit:g}mbit", "burst", str(burst), "latency", "100ms"]


def _run(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise OSError(f"{' '.join(cmd)}: {out.stderr.strip() or f'exit {out.returncode}'}")
    return out.stdout


def up(plan: Plan) -> None:
    """Build the plan's network; on any failure remove what was made and raise OSError."""
    try:
        for cmd in plan.commands():
            _run(cmd)
    except BaseException:
        down(f"{plan.prefix}-")
        raise


def stale() -> list[str]:
    """The prefixes of emulations whose process is gone (a namespace PREFIX-... of ours,
    PREFIX = OWNED + the emulating process's pid, that no live process owns)."""
    out = set()
    for name in owned():
        tag = name[len(OWNED) :].split("-")[0]
        if not (tag.isdigit() and alive(int(tag))):
            out.add(f"{OWNED}{tag}-")
    return sorted(out)


def alive(pid: int) -> bool:
    """Whether process `pid` exists (another user's included)."""
    try:
        os.kill(pid, 0)  # PermissionError: alive, another user's
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def owned(prefix: str = OWNED) -> list[str]:
    """Namespaces whose names start with prefix (ours: prefix starts with OWNED)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return sorted(n for n in names if n.startswith(prefix))


def down(prefix: str = OWNED) -> list[str]:
    """Kill every process inside the namespaces starting with prefix, then delete them
    (and with them their veths and bridges). Returns the names removed."""
    if not prefix.startswith(OWNED):
        raise ValueError(f"refusing to remove namespaces not starting with {OWNED!r}")
    names = owned(prefix)
    for name in names:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    for name in names:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return names


def watch(prefix: str, paths: list[str]) -> None:
    """The watcher of one emulation, run in a process of its own whose stdin is the read end
    of a pipe only the emulator holds open: it blocks until the emulator closes it. If the
    emulator wrote "done" first, it had removed everything itself; otherwise it died
    (kill -9), and the watcher ends the job: it kills every process in the namespaces
    starting with prefix, deletes them, and removes `paths` (its temporary directory)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    said = sys.stdin.buffer.read()
    if said == b"done":
        return
    down(prefix)
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def counters(plan: Plan) -> list[dict]:
    """Per capped link: what its qdisc passed (bytes, packets) and dropped, from `tc -s -j`."""
    out = []
    for name, ns, dev, mbit in plan.links():
        stats = json.loads(
            _run(["ip", "netns", "exec", ns, "tc", "-s", "-j", "qdisc", "show", "dev", dev])
        )
        root = next(q for q in stats if q.get("root") or q.get("parent") == "root")
        out.append(
            {
                "link": name,
                "rate_mbit_per_s": mbit,
                "bytes": int(root.get("bytes", 0)),
                "packets": int(root.get("packets", 0)),
                "drops": int(root.get("drops", 0)),
                "overlimits": int(root.get("overlimits", 0)),
            }
        )
    return out


_ECHO = """
import socket, sys
s = socket.create_server(("{addr}", {port}))
print("ready", flush=True)
c, _ = s.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while (b := c.recv(1)):
    c.sendall(b)
"""
_PING = """
import socket, statistics, sys, time
c = socket.create_connection(("{addr}", {port}))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
times = []
for i in range({rounds}):
    t = time.perf_counter()
    c.sendall(b"x")
    c.recv(1)
    times.append(time.perf_counter() - t)
print(statistics.median(times[{rounds} // 10:]) / 2 * 1e6)
"""


def tcp_latency_us(plan: Plan, rounds: int = 2000, python: str = sys.executable) -> float:
    """One-way time of a 1-byte TCP message from node 0 to node 1 and back, halved (median):
    the kernel's TCP path over the veth links and bridge, what a NIC's latency is on a real
    cluster. MPI's own cost per message is the calibrated machine's, not part of it."""
    if plan.nodes < 2:
        raise ValueError("a latency between nodes needs two of them")
    addr, port = plan.address(1), 7177
    echo = subprocess.Popen(
        ["ip", "netns", "exec", plan.node_ns(1), python, "-c", _ECHO.format(addr=addr, port=port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        echo.stdout.readline()  # "ready"
        ping = _PING.format(addr=addr, port=port, rounds=rounds)
        return float(_run(["ip", "netns", "exec", plan.node_ns(0), python, "-c", ping]))
    finally:
        echo.kill()
        echo.wait()

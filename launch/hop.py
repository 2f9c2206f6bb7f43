"""What MPICH's Hydra runs instead of ssh on an emulated cluster (`-launcher ssh
-launcher-exec WRAPPER`): WRAPPER is a short script that calls main() with the maps of host
names to namespaces and to CPUs. Hydra calls it as ssh, `WRAPPER [ssh options] HOST
COMMAND...`; it skips the options, finds HOST's namespace and runs COMMAND there with HOST
as its host name (a UTS namespace of its own), so MPI sees separate machines on a real
network, and on HOST's CPUs only (an affinity its processes inherit), as a real node's
processes run on its own cores.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

TAKES_VALUE = {"-o", "-p", "-l", "-i", "-F", "-J", "-b", "-c", "-E", "-m"}  # ssh(1)


def target(argv: list[str]) -> tuple[str, list[str]]:
    """(host, command) of an ssh-style argv."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in TAKES_VALUE else 1
    if i >= len(argv):
        raise ValueError(f"no host in {argv!r}")
    return argv[i], argv[i + 1 :]


def command(namespaces: dict[str, str], argv: list[str]) -> list[str]:
    """The argv that runs the ssh-style request in the host's namespace, as the host."""
    host, cmd = target(argv)
    if host not in namespaces:
        raise ValueError(f"unknown emulated host {host!r} (known: {', '.join(namespaces)})")
    # ssh hands the remote shell one string; Hydra quotes its pieces for that shell
    script = f"hostname {shlex.quote(host)} && exec {' '.join(cmd)}"
    return ["ip", "netns", "exec", namespaces[host], "unshare", "--uts", "sh", "-c", script]


def main(namespaces: dict[str, str], argv: list[str], cpus: dict | None = None) -> int:
    try:
        cmd = command(namespaces, argv)
    except ValueError as exc:
        print(f"launch.hop: {exc}", file=sys.stderr)
        return 255  # what ssh exits with when it cannot connect
    host = target(argv)[0]
    if cpus and host in cpus:
        os.sched_setaffinity(0, cpus[host])
    os.execvp(cmd[0], cmd)
    return 255  # not reached


def split_cpus(nodes: int, cpus) -> list[list[int]]:
    """Each node's CPUs: an equal share of `cpus` (a remainder is left idle, so that the
    nodes are alike), or, with more nodes than CPUs, the one CPU that nodes i, i + C, ...
    share."""
    cpus = sorted(cpus)
    share = len(cpus) // nodes
    if share == 0:
        return [[cpus[i % len(cpus)]] for i in range(nodes)]
    return [cpus[i * share : (i + 1) * share] for i in range(nodes)]


def script(namespaces: dict[str, str], cpus: dict | None = None, python: str | None = None):
    """The WRAPPER's text: this interpreter, calling main with the maps (launch from where
    this one is, installed or not)."""
    home = str(Path(__file__).resolve().parent.parent)
    return (
        f"#!{python or sys.executable}\n"
        f"import sys\nsys.path.insert(0, {home!r})\nfrom launch.hop import main\n"
        f"sys.exit(main({namespaces!r}, sys.argv[1:], {cpus!r}))\n"
    )

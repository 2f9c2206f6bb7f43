"""What MPICH's Hydra runs instead of ssh on an emulated cluster (`-launcher ssh
-launcher-exec WRAPPER`): WRAPPER is a two-line script that calls main() with the map of
host names to namespaces. Hydra calls it as ssh, `WRAPPER [ssh options] HOST COMMAND...`;
it skips the options, finds HOST's namespace and runs COMMAND there with HOST as its host
name (a UTS namespace of its own), so MPI sees separate machines on a real network.
"""

from __future__ import annotations

import os
import shlex
import sys

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


def main(namespaces: dict[str, str], argv: list[str]) -> int:
    try:
        cmd = command(namespaces, argv)
    except ValueError as exc:
        print(f"launch.hop: {exc}", file=sys.stderr)
        return 255  # what ssh exits with when it cannot connect
    os.execvp(cmd[0], cmd)
    return 255  # not reached


def script(namespaces: dict[str, str], python: str | None = None) -> str:
    """The WRAPPER's text: this interpreter, calling main with the map."""
    return (
        f"#!{python or sys.executable}\n"
        f"import sys\nfrom launch.hop import main\nsys.exit(main({namespaces!r}, sys.argv[1:]))\n"
    )

"""Runs across real hosts: the argv that starts a command on N nodes x G ranks per node (one
rank per GPU) under MPICH's Hydra `mpiexec`, Open MPI's `mpirun` or Slurm's `srun`, and the
hostfiles the first two read.

Pure functions, as local.py's are: each builder returns a `Launch` (the argv, and what the
caller must add to the launcher's own environment) and is tested by asserting it. Nothing
here reads a file, the environment or the user id; `python -m launch` does, and passes what
it found in. Bad input is a ValueError whose message is one line saying what is wrong.

The flags were checked against each launcher's own documentation: Hydra's option table
(mpich src/pm/hydra/mpiexec/options.c, what `mpiexec -help` prints), Open MPI's mpirun(1)
(v4 and v5, docs/man-openmpi/man1/mpirun.1.rst) and Slurm's srun(1); the non-obvious ones
say where, beside their use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

FLAVOURS = ("mpich", "openmpi")  # the two hostfile formats, as write_hostfile names them
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # an environment variable's name
_MPI_PLUGIN = re.compile(r"[a-z][a-z0-9_]*\Z")  # srun --mpi: pmi2, pmix, pmix_v4, none, ...
_SLOTS = re.compile(r"[1-9][0-9]*\Z")
# Open MPI's mpirun refuses root unless told twice over (mpirun(1), "Running as root").
ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


@dataclass(frozen=True)
class Launch:
    """What to run: `argv`, started with `env` set over the caller's environment (empty when
    the argv says everything)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def environ(self, base: Mapping[str, str]) -> dict[str, str]:
        """`base` (the caller's environment) with `env` over it: what to exec argv with."""
        return {**base, **self.env}


def mpich_argv(
    command: Sequence[str],
    hosts: Sequence[str],
    ranks_per_node: int,
    env: Mapping[str, str] | None = None,
    launcher: Sequence[str] | None = None,
    iface: str | None = None,
    hostfile: str | os.PathLike | None = None,
) -> Launch:
    """`mpiexec -hosts h1:G,h2:G (or -f HOSTFILE) -ppn G [-genv NAME VALUE]... [-iface IF]
    -n N*G COMMAND...`: G ranks on each of the N hosts. With a hostfile, `hosts` are the names
    it lists (read_hostfile), which give N. `iface` is the network interface Hydra and the
    ranks talk over (-iface: "network interface to use"), e.g. ib0 where eth0 is only for
    management."""
    command, hosts, g, env = _common(command, hosts, ranks_per_node, env)
    argv = _launcher(launcher, "mpiexec")
    if hostfile is not None:
        argv += ["-f", _path(hostfile)]
    else:  # -hosts takes "host:procs" entries, comma-separated (options.c, hostlist_fn)
        argv += ["-hosts", ",".join(f"{host}:{g}" for host in hosts)]
    argv += ["-ppn", str(g)]
    for name, value in env.items():  # "-genv {name} {value}": two words, no '='
        argv += ["-genv", name, value]
    if iface is not None:
        argv += ["-iface", _word(iface, "network interface")]
    # -n is a local option, and Hydra's usage puts the global ones before it:
    # "mpiexec [global opts] [local opts for exec1] [exec1] [exec1 args]".
    return Launch([*argv, "-n", str(len(hosts) * g), *command])


def openmpi_argv(
    command: Sequence[str],
    hosts: Sequence[str],
    ranks_per_node: int,
    env: Mapping[str, str] | None = None,
    launcher: Sequence[str] | None = None,
    hostfile: str | os.PathLike | None = None,
    as_root: bool = False,
) -> Launch:
    """`mpirun --host h1:G,h2:G (or --hostfile F) -np N*G --map-by ppr:G:node --oversubscribe
    [-x NAME=VALUE]... COMMAND...`. `as_root` (the caller's `os.geteuid() == 0`) adds
    --allow-run-as-root and returns OMPI_ALLOW_RUN_AS_ROOT=1 and
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 in env, which mpirun(1) documents as the same
    permission ("Running as root"): the flag alone was not honoured everywhere (v5's
    remote daemons refused root with it, openpmix/prrte#1309; open-mpi/ompi#7704), while
    OMPI_* variables travel to everything mpirun starts."""
    command, hosts, g, env = _common(command, hosts, ranks_per_node, env)
    argv = _launcher(launcher, "mpirun")
    if hostfile is not None:
        argv += ["--hostfile", _path(hostfile)]
    else:
        argv += ["--host", ",".join(f"{host}:{g}" for host in hosts)]
    # ppr:G:node is "G processes per node" in v4 and v5 (--npernode's replacement).
    # --oversubscribe lets G exceed a hostfile's slots; with ppr it failed only in a v5
    # release candidate (open-mpi/ompi#10216, fixed before 5.0.0 by openpmix/prrte#1327).
    argv += ["-np", str(len(hosts) * g), "--map-by", f"ppr:{g}:node", "--oversubscribe"]
    for name, value in env.items():  # one variable per -x; its parser takes no quoting
        argv += ["-x", f"{name}={value}"]
    if as_root:
        argv.append("--allow-run-as-root")
    return Launch([*argv, *command], dict(ROOT_ENV) if as_root else {})


def srun_argv(
    command: Sequence[str],
    hosts: Sequence[str] | int,
    ranks_per_node: int,
    env: Mapping[str, str] | None = None,
    launcher: Sequence[str] | None = None,
    mpi: str | None = None,
) -> Launch:
    """`srun --nodes N --ntasks-per-node G --ntasks N*G [--nodelist h1,h2]
    [--export=ALL,NAME=VALUE,...] [--mpi=PLUGIN] COMMAND...`. `hosts` are the nodes' names,
    or, inside an allocation whose nodes Slurm picks (an sbatch script), just how many.
    `mpi` is the PMI plugin the ranks' MPI speaks (pmi2 for MPICH, pmix for Open MPI 5;
    `srun --mpi=list` shows a site's); None leaves it to the site's MpiDefault.

    The variables are also returned in env: under --export=ALL the caller's own value of a
    variable "will take precedence over any explicitly given" one (srun(1), --export), so
    only setting it in srun's environment makes the value given here the one the ranks see."""
    if isinstance(hosts, int) and not isinstance(hosts, bool):
        if hosts < 1:
            raise ValueError(f"the number of nodes must be >= 1, got {hosts}")
        nodes, nodelist = hosts, None
        command, _, g, env = _common(command, ["-"], ranks_per_node, env)
    else:
        command, names, g, env = _common(command, hosts, ranks_per_node, env)
        nodes, nodelist = len(names), ",".join(names)
    argv = _launcher(launcher, "srun")
    argv += ["--nodes", str(nodes), "--ntasks-per-node", str(g), "--ntasks", str(nodes * g)]
    if nodelist is not None:
        argv += ["--nodelist", nodelist]
    if env:
        for name, value in env.items():
            if "," in value:
                raise ValueError(f"srun's --export list is comma-separated: {name}={value!r}")
        argv.append("--export=" + ",".join(["ALL", *(f"{n}={v}" for n, v in env.items())]))
    if mpi is not None:
        if not isinstance(mpi, str) or not _MPI_PLUGIN.match(mpi):
            raise ValueError(f"srun --mpi takes a plugin name such as pmi2 or pmix, got {mpi!r}")
        argv.append(f"--mpi={mpi}")
    return Launch([*argv, *command], dict(env))


def read_hostfile(text: str) -> list[tuple[str, int]]:
    """(host, slots) for each host a hostfile lists, in order: MPICH's `host` or `host:slots`
    lines, or Open MPI's `host slots=N [max_slots=M]`; slots is 1 where a line gives none.
    '#' starts a comment, to the end of its line; blank lines are skipped. A line that is
    neither format, a host listed twice, or no host at all is a ValueError naming the line."""
    found: list[tuple[str, int]] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        words = raw.partition("#")[0].split()
        if not words:
            continue
        entry = _hostfile_entry(words)
        if entry is None:
            raise ValueError(
                f"hostfile line {number}: expected 'host', 'host:slots' or 'host slots=N',"
                f" got {raw.strip()!r}"
            )
        host, slots = entry
        if host in first_line:
            raise ValueError(
                f"hostfile line {number}: {host} is listed twice (first on line {first_line[host]})"
            )
        first_line[host] = number
        found.append(entry)
    if not found:
        raise ValueError("hostfile lists no hosts")
    return found


def hostfile_flavour(text: str) -> str:
    """Whose format a hostfile that read_hostfile accepts is in: "mpich" (host:slots lines),
    "openmpi" (host slots=N lines), "either" (bare names only, which both read) or "mixed".
    mpiexec -f and mpirun --hostfile each read only their own: a file in the other's format
    is better passed as its list of hosts."""
    kinds = set()
    for raw in text.splitlines():
        words = raw.partition("#")[0].split()
        if len(words) > 1:
            kinds.add("openmpi")
        elif words and ":" in words[0]:
            kinds.add("mpich")
    if not kinds:
        return "either"
    return kinds.pop() if len(kinds) == 1 else "mixed"


def write_hostfile(hosts: Sequence[str], slots: int, flavour: str) -> str:
    """The text of a hostfile giving each host `slots` slots: `host:slots` lines for MPICH's
    -f, `host slots=N` lines for Open MPI's --hostfile. read_hostfile reads both back."""
    if flavour not in FLAVOURS:
        raise ValueError(f"hostfile flavour must be one of {', '.join(FLAVOURS)}, got {flavour!r}")
    _, hosts, slots, _ = _common(["-"], hosts, slots, None)
    line = "{}:{}" if flavour == "mpich" else "{} slots={}"
    return "".join(line.format(host, slots) + "\n" for host in hosts)


def _hostfile_entry(words: list[str]) -> tuple[str, int] | None:
    """(host, slots) from one line's words, or None if they are neither format."""
    head, *rest = words
    if not rest:  # MPICH: host or host:slots
        host, colon, count = head.partition(":")
        if colon and not _SLOTS.match(count):
            return None
        return (host, int(count) if colon else 1) if _valid_host(host) else None
    if not _valid_host(head):  # Open MPI: host slots=N max_slots=M, either optional
        return None
    fields = dict(word.partition("=")[::2] for word in rest)
    if len(fields) != len(rest) or not set(fields) <= {"slots", "max_slots"}:
        return None
    if not all(_SLOTS.match(value) for value in fields.values()):
        return None
    return head, int(fields.get("slots", fields.get("max_slots", "1")))


def _common(command, hosts, ranks_per_node, env):
    """The checks every builder makes: (command, hosts, G, env) as lists and a dict."""
    if isinstance(command, str) or not command or not all(isinstance(a, str) for a in command):
        raise ValueError(f"the command must be a non-empty list of strings, got {command!r}")
    if isinstance(ranks_per_node, bool) or not isinstance(ranks_per_node, int):
        raise ValueError(f"ranks per node must be an integer, got {ranks_per_node!r}")
    if ranks_per_node < 1:
        raise ValueError(f"ranks per node must be >= 1, got {ranks_per_node}")
    if isinstance(hosts, str):
        raise ValueError(f"hosts must be a list of names, got the string {hosts!r}")
    hosts = list(hosts)
    if not hosts:
        raise ValueError("no hosts given: at least one node is needed")
    for host in hosts:
        if not _valid_host(host):
            raise ValueError(
                f"bad host name {host!r}: it must be non-empty, without whitespace, ',' or ':'"
            )
    if len(set(hosts)) != len(hosts):
        twice = next(h for h in hosts if hosts.count(h) > 1)
        raise ValueError(f"host {twice} is listed twice")
    env = dict(env or {})
    for name, value in env.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"bad environment variable name {name!r}: letters, digits, _")
        if not isinstance(value, str):
            raise ValueError(f"environment variable {name}'s value must be a string")
    return list(command), hosts, ranks_per_node, env


def _valid_host(host) -> bool:
    return isinstance(host, str) and bool(host) and not re.search(r"[\s,:]", host)


def _launcher(launcher, default: str) -> list[str]:
    if launcher is None:
        return [default]
    if isinstance(launcher, str) or not launcher:
        raise ValueError(f"the launcher must be a non-empty list of strings, got {launcher!r}")
    return list(launcher)


def _path(path) -> str:
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise ValueError(f"bad hostfile path {path!r}")
    return text


def _word(value, what: str) -> str:
    if not isinstance(value, str) or not value or re.search(r"\s", value):
        raise ValueError(f"bad {what} {value!r}: one word, no whitespace")
    return value

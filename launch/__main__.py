"""`python -m launch`: start a command on N hosts x G ranks per node (one rank per GPU)
through MPICH's mpiexec, Open MPI's mpirun or Slurm's srun, or, with --dry-run, print what
it would run. The command is what follows `--`, by default this interpreter's
`python -m allreduce_train`.

The argv is clusters.py's; this module only does what those pure functions may not: read
the hostfile, the user id and the environment, and run it. Run, each rank's command goes
under launch.rank's watch (`python -m launch.rank -- COMMAND`, this interpreter), which
names a rank killed by a signal; this process passes the launcher's stderr on, and exits
7 (a peer lost) when a watch said so, else with the launcher's code. SIGINT, SIGTERM and
SIGHUP go on to the launcher, which passes them to every rank. --dry-run prints the
launcher's command without the watch, to paste. Bad input is reported as argparse reports
it, but on one line: `python -m launch: error: ...`, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys

from . import clusters, rank

PROG = "python -m launch"
USAGE = (
    f"{PROG} --launcher {{mpich,openmpi,srun}} (--hosts H1,H2,... | --hostfile FILE |"
    " --nodes N) --ranks-per-node G [--env NAME=VALUE ...] [--iface IF] [--mpi PLUGIN]"
    " [--dry-run] [-- COMMAND ...]"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's message and status, without the usage lines
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        usage=USAGE,
        description="Run COMMAND (default: this Python's -m allreduce_train) as G ranks on "
        "each of N hosts, one per GPU, under MPICH, Open MPI or Slurm.",
        epilog="Each rank runs under a watch (python -m launch.rank) that names a rank killed"
        " by a signal: 'python -m launch: error: rank 2 died (signal 9: SIGKILL; ...)', and"
        " the exit status is then 7, whatever the launcher's. Example: python -m launch"
        " --launcher mpich --hostfile launch/examples/hostfile --ranks-per-node 8 --dry-run"
        " -- python -m allreduce_train --device gpu",
    )
    p.add_argument("--launcher", required=True, choices=("mpich", "openmpi", "srun"))
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--hosts", metavar="H1,H2,...", help="the nodes, comma-separated")
    where.add_argument(
        "--hostfile", metavar="FILE", help="MPICH (host[:slots]) or Open MPI (host slots=N)"
    )
    where.add_argument(
        "--nodes", type=int, metavar="N", help="srun only: N nodes of the allocation, Slurm's pick"
    )
    p.add_argument("--ranks-per-node", type=int, required=True, metavar="G", help="GPUs per node")
    p.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="set in every rank"
    )
    p.add_argument("--iface", metavar="IF", help="mpich only: the network interface, e.g. ib0")
    p.add_argument("--mpi", metavar="PLUGIN", help="srun only: --mpi=PLUGIN, e.g. pmi2 or pmix")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the launcher's command as one line to paste into a shell, the variables it"
        " needs set before it (NAME=VALUE ... COMMAND; without the per-rank watch); do not"
        " run it",
    )
    return p


def build(args: argparse.Namespace, command: list[str], as_root: bool) -> clusters.Launch:
    """The Launch the parsed options ask for; ValueError (one line) for bad input, a
    hostfile that cannot be read included."""
    env: dict[str, str] = {}
    for pair in args.env:
        name, equals, value = pair.partition("=")
        if not equals:
            raise ValueError(f"--env takes NAME=VALUE, got {pair!r}")
        if name in env:
            raise ValueError(f"--env {name} is given twice")
        env[name] = value
    only = {"iface": "mpich", "mpi": "srun", "nodes": "srun"}
    for option, launcher in only.items():
        if getattr(args, option) is not None and args.launcher != launcher:
            raise ValueError(f"--{option} is for --launcher {launcher} only")
    hostfile = None  # passed on as a file only to the launcher that reads its format
    if args.hosts is not None:
        hosts = args.hosts.split(",")
    elif args.hostfile is not None:
        try:
            with open(args.hostfile, encoding="utf-8") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read hostfile {args.hostfile}: {_reason(e)}") from None
        try:
            hosts = [host for host, _ in clusters.read_hostfile(text)]
        except ValueError as e:
            raise ValueError(f"{args.hostfile}: {e}") from None
        if clusters.hostfile_flavour(text) in ("either", args.launcher):
            hostfile = args.hostfile
    else:
        hosts = args.nodes
    g = args.ranks_per_node
    if args.launcher == "mpich":
        return clusters.mpich_argv(command, hosts, g, env, iface=args.iface, hostfile=hostfile)
    if args.launcher == "openmpi":
        return clusters.openmpi_argv(command, hosts, g, env, hostfile=hostfile, as_root=as_root)
    return clusters.srun_argv(command, hosts, g, env, mpi=args.mpi)


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    options, command = words, []
    if "--" in words:
        cut = words.index("--")
        options, command = words[:cut], words[cut + 1 :]
    p = parser()
    args = p.parse_args(options)
    command = command or [sys.executable, "-m", "allreduce_train"]
    try:
        launch = build(args, command, as_root=os.geteuid() == 0)
    except ValueError as e:
        p.error(str(e))
    if args.dry_run:
        print(command_line(launch))
        return 0
    watched = build(args, [sys.executable, "-m", "launch.rank", "--", *command], os.geteuid() == 0)
    return run(watched)


def run(launch: clusters.Launch) -> int:
    """Run the launch, each rank under launch.rank's watch, and pass its stderr on line by
    line; SIGINT, SIGTERM and SIGHUP go on to the launcher, which passes them to every rank.
    Its exit code, but PEER_LOST (7) when a watch said a rank died of a signal: the launcher's
    own code is then the signal's number, or another rank's."""
    try:
        proc = subprocess.Popen(
            launch.argv,
            env=launch.environ(os.environ),
            stderr=subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C reaches us, and the launcher once
            preexec_fn=rank.die_with_parent,  # and it ends with us
        )
    except OSError as e:
        print(f"{PROG}: error: cannot start {launch.argv[0]}: {_reason(e)}", file=sys.stderr)
        return 127

    def forward(signum, frame):
        if proc.poll() is None:
            proc.send_signal(signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, forward)
    died = []
    for line in proc.stderr:
        sys.stderr.buffer.write(line)
        sys.stderr.flush()
        found = rank.DIED.search(line.decode(errors="replace"))
        if found:
            died.append(found[1])
    code = proc.wait()
    if died and code != 0:
        return rank.PEER_LOST
    return code if code >= 0 else 128 - code


def command_line(launch: clusters.Launch) -> str:
    """The launch as one line for a POSIX shell: `NAME=VALUE ... ARGV`, each value and word
    quoted as the shell needs, so that pasting it sets the variables for the launcher alone,
    as running it here would."""
    env = [f"{name}={shlex.quote(value)}" for name, value in launch.env.items()]
    return " ".join([*env, shlex.join(launch.argv)])


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


if __name__ == "__main__":
    sys.exit(main())

"""`python -m launch` (its --dry-run output for each launcher, its one-line errors with
status 2) and launch/examples/slurm.sbatch: it parses, its #SBATCH lines agree with its
variables, and under a stand-in srun it runs exactly the srun that launch.clusters builds."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from launch import clusters

ROOT = Path(__file__).resolve().parents[2]
SBATCH = ROOT / "launch" / "examples" / "slurm.sbatch"
ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "launch", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_dry_run_prints_each_launchers_argv():
    mpich = cli(
        "--launcher",
        "mpich",
        "--hosts",
        "node001,node002",
        "--ranks-per-node",
        "8",
        "--env",
        "OMP_NUM_THREADS=1",
        "--iface",
        "ib0",
        "--dry-run",
        "--",
        "python",
        "-m",
        "allreduce_train",
        "--device",
        "gpu",
    )
    assert (mpich.returncode, mpich.stderr) == (0, "")
    assert mpich.stdout == (
        "mpiexec -hosts node001:8,node002:8 -ppn 8 -genv OMP_NUM_THREADS 1 -iface ib0 -n 16"
        " python -m allreduce_train --device gpu\n"
    )
    ompi = cli(
        "--launcher",
        "openmpi",
        "--hostfile",
        "launch/examples/hostfile",
        "--ranks-per-node",
        "8",
        "--dry-run",
        "--",
        "python",
        "-m",
        "allreduce_train",
    )
    as_root = os.geteuid() == 0  # what the command line passes in: the env words follow it
    env_words = "".join(f"{k}=1 " for k in ROOT_ENV) if as_root else ""
    assert ompi.stdout == env_words + (  # mpirun cannot read MPICH's host:slots: hosts instead
        "mpirun --host node001:8,node002:8 -np 16 --map-by ppr:8:node --oversubscribe"
        + (" --allow-run-as-root" if as_root else "")
        + " python -m allreduce_train\n"
    )
    srun = cli(
        "--launcher",
        "srun",
        "--nodes",
        "2",
        "--ranks-per-node",
        "8",
        "--mpi",
        "pmi2",
        "--env",
        "A=x y",
        "--dry-run",
    )
    assert srun.stdout == (
        "A='x y' "
        "srun --nodes 2 --ntasks-per-node 8 --ntasks 16 '--export=ALL,A=x y' --mpi=pmi2 "
        f"{shlex.quote(sys.executable)} -m allreduce_train\n"  # the default command
    )


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
@pytest.mark.parametrize("launcher", ["openmpi", "srun"])
def test_the_dry_run_is_one_line_that_runs_as_launch_would_when_pasted(tmp_path, launcher):
    """Pasted into sh, the line starts the launcher with the variables launch would set (a
    value with a space and a quote included) and the argv it would exec."""
    where = ["--nodes", "2"] if launcher == "srun" else ["--hosts", "a,b"]
    done = cli("--launcher", launcher, *where, "--ranks-per-node", "2", "--env", "Q=it's a b",
               "--env", "R=1", "--dry-run", "--", "train", "--x", "y z")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1, done.stdout
    bin_, seen = tmp_path / "bin", tmp_path / "seen"
    bin_.mkdir()
    names = ["Q", "R", *(ROOT_ENV if launcher == "openmpi" and os.geteuid() == 0 else [])]
    record = "".join(f'printf "%s\\0" "{n}=${{{n}-unset}}" >> {seen}\n' for n in names)
    fake = bin_ / ("mpirun" if launcher == "openmpi" else "srun")
    fake.write_text(f'#!/bin/sh\nprintf "%s\\0" "$@" > {seen}.argv\n{record}')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in names}
    env["PATH"] = f"{bin_}:{env['PATH']}"
    ran = subprocess.run(["sh", "-c", done.stdout], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    command, env_given = ["train", "--x", "y z"], {"Q": "it's a b", "R": "1"}
    if launcher == "srun":
        expected = clusters.srun_argv(command, 2, 2, env_given)
    else:
        expected = clusters.openmpi_argv(command, ["a", "b"], 2, env_given, as_root=len(names) > 2)
    got = dict(x.split("=", 1) for x in seen.read_text().split("\0")[:-1])
    assert got == {n: expected.env.get(n, "unset") for n in names}
    argv = (tmp_path / "seen.argv").read_text().split("\0")[:-1]
    assert argv == expected.argv[1:]


@pytest.mark.parametrize(
    "text, launcher, passed",
    [
        ("a slots=4\nb slots=4\n", "openmpi", ["--hostfile", "{path}"]),
        ("a slots=4\nb slots=4\n", "mpich", ["-hosts", "a:4,b:4"]),
        ("a:4\nb:4\n", "mpich", ["-f", "{path}"]),
        ("a\nb\n", "openmpi", ["--hostfile", "{path}"]),
        ("a:4\nb slots=4\n", "openmpi", ["--host", "a:4,b:4"]),
    ],
)
def test_a_hostfile_goes_on_as_a_file_only_in_the_launchers_own_format(
    tmp_path, text, launcher, passed
):
    path = tmp_path / "hosts"
    path.write_text(text)
    done = cli(
        "--launcher", launcher, "--hostfile", str(path), "--ranks-per-node", "4", "--dry-run"
    )
    assert done.returncode == 0, done.stderr
    argv = [w for w in shlex.split(done.stdout) if not re.match(r"[A-Z_]+=", w)]
    assert argv[1:3] == [word.format(path=path) for word in passed]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ranks-per-node", "8"], "--launcher"),
        (["--launcher", "mpich", "--ranks-per-node", "8"], "one of the arguments --hosts"),
        (["--launcher", "mpich", "--hosts", "a", "--ranks-per-node", "x"], "invalid int value"),
        (["--launcher", "mpich", "--hosts", "a", "--ranks-per-node", "0"], "must be >= 1"),
        (["--launcher", "mpich", "--hosts", "a,,b", "--ranks-per-node", "8"], "bad host name"),
        (["--launcher", "srun", "--hosts", "a", "--ranks-per-node", "8", "--env", "X"], "NAME="),
        (["--launcher", "openmpi", "--nodes", "2", "--ranks-per-node", "8"], "srun only"),
        (
            ["--launcher", "srun", "--nodes", "2", "--ranks-per-node", "8", "--iface", "ib0"],
            "mpich",
        ),
        (["--launcher", "mpich", "--hostfile", "/nonexistent", "--ranks-per-node", "8"], "cannot"),
        (["--launcher", "mpich", "--hosts", "a", "--ranks-per-node", "8", "stray"], "unrecognized"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_status_2(args, message):
    done = cli(*args, "--dry-run")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("python -m launch: error: ") and message in done.stderr


def test_a_bad_hostfile_line_is_reported_with_its_file_and_number(tmp_path):
    bad = tmp_path / "hosts"
    bad.write_text("node001:8\nnode002 8\n")
    done = cli("--launcher", "mpich", "--hostfile", str(bad), "--ranks-per-node", "8")
    assert done.returncode == 2
    assert done.stderr == f"python -m launch: error: {bad}: hostfile line 2: expected 'host', " + (
        "'host:slots' or 'host slots=N', got 'node002 8'\n"
    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_sbatch_script_parses():
    done = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")


def test_the_sbatch_scripts_copies_match_its_sbatch_lines():
    text = SBATCH.read_text()
    directive = dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)$", text, re.M))
    variable = dict(re.findall(r"^([A-Z_]+)=(\S+)\s+# =", text, re.M))
    assert variable["NODES"] == directive["nodes"]
    assert variable["GPUS_PER_NODE"] == directive["ntasks-per-node"] == directive["gpus-per-node"]
    assert variable["PARTITION"] == directive["partition"]
    assert variable["ACCOUNT"] == directive["account"]
    assert variable["TIME_LIMIT"] == directive["time"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    "slurm, overrides, nodes, g, env, mpi, train",
    [
        ({}, {}, 2, 8, {"OMP_NUM_THREADS": "1"}, "pmi2", ["--device", "gpu", "--epochs", "20"]),
        (
            {"SLURM_JOB_NUM_NODES": "3", "SLURM_NTASKS_PER_NODE": "4"},
            {"MPI_PLUGIN": "pmix", "EXTRA_ENV": "A=1 B=2", "TRAIN_ARGS": "--steps 5"},
            3,
            4,
            {"A": "1", "B": "2"},
            "pmix",
            ["--steps", "5"],
        ),
        ({}, {"MPI_PLUGIN": "", "EXTRA_ENV": "", "TRAIN_ARGS": ""}, 2, 8, {}, None, []),
    ],
)
def test_the_sbatch_script_runs_srun_as_python_m_launch_would(
    tmp_path, slurm, overrides, nodes, g, env, mpi, train
):
    """The script under a stand-in srun that writes down its argv and environment."""
    venv, bin_, record = tmp_path / "venv", tmp_path / "bin", tmp_path / "env"
    srun = 'printf "%s\\0" "$@"\n' + "".join(
        f'echo "{name}=${{{name}-unset}}" >> {record}\n' for name in env
    )
    for fake, body in [(venv / "bin" / "python", ""), (bin_ / "srun", srun)]:
        fake.parent.mkdir(parents=True, exist_ok=True)
        fake.write_text(f"#!/bin/bash\n{body}")
        fake.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    for name in ("VENV", "TRAIN_ARGS", "MPI_PLUGIN", "EXTRA_ENV", *env):
        base.pop(name, None)  # the script sees only what each case gives it
    base |= {"PATH": f"{bin_}:{base['PATH']}", "VENV": str(venv), **slurm, **overrides}
    done = subprocess.run(["bash", str(SBATCH)], env=base, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    header, _, argv = done.stdout.partition("\n")
    assert header.startswith(f"allreduce_train: {nodes} nodes x {g} GPUs = {nodes * g} ranks")
    command = [str(venv / "bin" / "python"), "-m", "allreduce_train", *train]
    expected = clusters.srun_argv(command, nodes, g, env, mpi=mpi)
    assert argv.split("\0")[:-1] == expected.argv[1:]
    seen = record.read_text().splitlines() if env else []
    assert seen == [f"{k}={v}" for k, v in expected.env.items()]

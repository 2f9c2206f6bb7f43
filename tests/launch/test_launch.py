"""launch: the launcher lookup and the argv it builds, asserted as argv (pure functions)."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import launch

from conftest import gone


def executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_mpiexec_from_the_environment_is_split_as_a_shell_would():
    env = {"MPIEXEC": "'/opt/my mpi/bin/mpiexec' -launcher fork", "PATH": ""}
    assert launch.mpiexec(env) == ["/opt/my mpi/bin/mpiexec", "-launcher", "fork"]


def test_the_mpirun_beside_the_interpreter_wins_over_the_one_on_path(tmp_path):
    venv, other = tmp_path / "venv" / "bin", tmp_path / "usr" / "bin"
    venv.mkdir(parents=True)
    other.mkdir(parents=True)
    beside = executable(venv / "mpirun")
    on_path = executable(other / "mpirun")
    python = str(venv / "python")
    assert launch.mpiexec({"PATH": str(other)}, python) == [str(beside)]
    beside.unlink()
    assert launch.mpiexec({"PATH": str(other)}, python) == [str(on_path)]
    on_path.unlink()  # none at all: the bare name, whose start then fails with its own error
    assert launch.mpiexec({"PATH": str(other)}, python) == ["mpirun"]


def test_this_interpreters_launcher_is_the_mpich_extras():
    found = launch.mpiexec({k: v for k, v in os.environ.items() if k != "MPIEXEC"})
    assert Path(found[0]).parent == Path(sys.executable).parent  # the test extra's venv


def test_mpirun_argv_starts_p_copies_of_the_command():
    command = [sys.executable, "-m", "allreduce_train", "--steps", "3"]
    assert launch.mpirun_argv(4, command, ["mpiexec"]) == ["mpiexec", "-n", "4", *command]
    assert launch.mpirun_argv(1, ["x"], ["a", "b"]) == ["a", "b", "-n", "1", "x"]
    with pytest.raises(ValueError, match="world_size must be >= 1"):
        launch.mpirun_argv(0, ["x"], ["mpiexec"])


def test_run_kills_the_whole_process_group_of_a_hung_command(tmp_path):
    pids = tmp_path / "pids"
    hung = [
        "sh",
        "-c",
        f"sleep 60 & echo $! > {pids}; echo started; wait",
    ]  # a rank and its launcher
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        launch.run(hung, timeout_s=1)
    assert caught.value.stdout == "started\n"
    child = int(pids.read_text())
    assert gone(child), f"the hung command's child {child} outlived the timeout"


def test_run_returns_what_a_command_printed_and_its_exit_code():
    done = launch.run([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"], timeout_s=30)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "")


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(2, 130), (15, 143)])
def test_a_caller_stopped_by_a_signal_takes_the_job_with_it(signum, code, tmp_path):
    """The job runs in a session of its own, out of the signal's reach: a SIGTERM or Ctrl-C
    to the caller (netsim calibrate running its probes) left mpirun and its ranks running."""
    pids = tmp_path / "pids"
    caller = (
        "import launch, signal, sys\n"
        # Ctrl-C raises KeyboardInterrupt, as at a terminal: a suite started in the
        # background of a shell has SIGINT ignored, and a child inherits that
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "try:\n"
        f"    launch.run(['sh', '-c', 'sleep 60 & echo $! > {pids}; wait'], timeout_s=60)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", caller], cwd=Path(launch.__file__).parent.parent)
    try:
        deadline = time.monotonic() + 30
        while not (pids.exists() and pids.read_text().strip()):
            assert time.monotonic() < deadline and proc.poll() is None, "the job did not start"
            time.sleep(0.05)
        child = int(pids.read_text())
        os.kill(proc.pid, signum)
        assert proc.wait(timeout=20) == code
        assert gone(child), f"the job's process {child} outlived its caller"
    finally:
        if proc.poll() is None:  # a failure here must not leave the caller and its job
            proc.kill()
            proc.wait()
            if pids.exists() and pids.read_text().strip():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pids.read_text()), signal.SIGKILL)


def test_a_signal_while_the_job_starts_is_acted_on_once_it_has(tmp_path):
    """A SIGTERM between the job's start and run's handler ended the caller (-15) and left
    the job running: it is held until Popen has returned, then ends both (143)."""
    pid = tmp_path / "pid"
    caller = (
        "import launch, signal, subprocess\n"
        "class Popen(subprocess.Popen):\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        super().__init__(*args, **kwargs)\n"
        f"        open({str(pid)!r}, 'w').write(str(self.pid))\n"
        "        signal.raise_signal(signal.SIGTERM)  # the job started, its pid not yet known\n"
        "subprocess.Popen = Popen\n"
        "launch.run(['sleep', '60'], timeout_s=60)\n"
    )
    done = subprocess.run([sys.executable, "-c", caller], cwd=Path(launch.__file__).parent.parent,
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    child = int(pid.read_text())
    try:
        assert done.returncode == 143, done.stderr
        assert gone(child), "the job outlived its caller"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)

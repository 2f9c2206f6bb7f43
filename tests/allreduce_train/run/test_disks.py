"""A full disk or a read-only run directory: one line naming the file, exit code 9 on every
rank, never SIGBUS; what was recorded before stays readable and no temporary file is left.
Real small filesystems (tmpfs), so root only; skipped with the reason elsewhere."""

import os
import subprocess
from contextlib import contextmanager

import pytest

from allreduce_train import exits
from netsim.record import rundir

from conftest import train

pytestmark = [
    pytest.mark.mpi,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root"),
]


@contextmanager
def tmpfs(where, size: str, *options: str):
    where.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs"]
    subprocess.run([*mount, str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def one_line(result, *words):
    assert result.returncode == exits.OUTPUT, result.output
    errors = [x for x in result.output.splitlines() if "error" in x.lower()]
    assert len(errors) >= 1 and all(x.startswith("allreduce_train: error: rank ") for x in errors)
    assert "Traceback" not in result.output and "Bus error" not in result.output
    for word in words:
        assert word in errors[0], errors


def test_a_disk_too_small_to_start_on(tmp_path):
    with tmpfs(tmp_path / "disk", "300k") as disk:
        one_line(train(2, disk / "run", "--steps", "5"), "No space left on device", "steps-rank")
        assert not [p for p in (disk / "run").iterdir() if ".tmp" in p.name]


def test_a_disk_that_fills_mid_run_keeps_what_was_recorded(tmp_path):
    # 1 MiB of step file per rank to start, ~104 bytes a step: the disk fills at its first
    # growth, near step 10,000, whatever the model; the smallest one's steps are the fastest
    with tmpfs(tmp_path / "disk", "2300k") as disk:
        tiny = ("--layers", "64,10", "--global-batch", "2", "--eval-every", "100000")
        result = train(2, disk / "run", "--steps", "100000", *tiny, timeout=180)
        one_line(result, "No space left on device", "steps-rank")
        steps = [len(rundir.read_steps(str(disk / "run"), rank)) for rank in (0, 1)]
        assert min(steps) > 5000, steps
        assert not [p for p in (disk / "run").iterdir() if ".tmp" in p.name]


def test_a_read_only_run_directory(tmp_path):
    with tmpfs(tmp_path / "disk", "1m", "ro") as disk:
        result = train(2, disk, "--steps", "5")
        one_line(result, "Read-only file system", str(disk))
        assert sum(x.startswith("allreduce_train: error") for x in result.output.splitlines()) == 1


def test_a_run_directory_that_cannot_be_made_on_a_read_only_disk(tmp_path):
    with tmpfs(tmp_path / "disk", "1m", "ro") as disk:  # it exited 2, a usage error, before
        result = train(2, disk / "run", "--steps", "5")
        one_line(result, "Read-only file system", str(disk / "run"))

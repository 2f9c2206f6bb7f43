"""The step file's reader (netsim.record.stepfile): a file damaged before its end, another
format version, a header without what steps leave out, each named in one line."""

import json

import pytest

from netsim.record import rundir, stepfile
from netsim.record.recorder import Recorder


def written(tmp_path, steps):
    """A step file of `steps` closed steps of one round, as a rank writes it."""
    path = rundir.step_file(str(tmp_path), 0)
    rec = Recorder(path, 0, 3, 4)
    rec.bind(())
    for step in range(steps):
        rec.commit(step, 0.25, 10, 20, 30, 45)
    rec.close()
    return path, rec._fsize


def frame(kind, payload):
    return stepfile.frame(kind, payload)


def header(**fields):
    return frame(
        stepfile.HEADER,
        json.dumps({"format": "allreduce_train steps", "rank": 0, **fields}).encode(),
    )


def test_damage_before_the_end_is_named(tmp_path):
    path, fsize = written(tmp_path, 5)
    data = bytearray(open(path, "rb").read())
    second_step = len(data) - 4 * fsize
    data[second_step - 1] ^= 0xFF  # the closing size of the first step frame
    open(path, "wb").write(bytes(data))
    with pytest.raises(stepfile.StepFileError, match=r"damaged at byte \d+"):
        stepfile.read(path)
    open(path, "wb").write(b"steps?" + bytes(100))
    with pytest.raises(stepfile.StepFileError, match="not a step record file"):
        stepfile.read(path)


@pytest.mark.parametrize("version", [1, 2, 4])
def test_another_format_version_is_named(version, tmp_path):
    path = rundir.step_file(str(tmp_path), 0)
    open(path, "wb").write(header(version=version, steps_per_epoch=1, samples=1))
    with pytest.raises(
        stepfile.StepFileError, match=f"format version {version}; this netsim reads version 3"
    ):
        stepfile.read(path)


def test_a_header_without_what_steps_leave_out_is_damaged(tmp_path):
    path = rundir.step_file(str(tmp_path), 0)
    open(path, "wb").write(header(version=3))  # no steps_per_epoch, samples
    with pytest.raises(
        stepfile.StepFileError, match=r"damaged header \(steps_per_epoch, samples\)"
    ):
        stepfile.read(path)

"""The step file's reader (netsim.record.stepfile): a file damaged before its end, another
format version, a header without what steps leave out, each named in one line."""

import json
import struct

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


@pytest.mark.parametrize("version", [1, 2, 6])
def test_another_format_version_is_named(version, tmp_path):
    path = rundir.step_file(str(tmp_path), 0)
    open(path, "wb").write(header(version=version, steps_per_epoch=1, samples=1))
    with pytest.raises(
        stepfile.StepFileError,
        match=f"format version {version}; this netsim reads versions 3, 4, 5",
    ):
        stepfile.read(path)


def test_a_version_3_file_reads_as_copying_nothing(tmp_path):
    """Runs recorded before the copies were (version 3: no copy bytes, no copy times)."""
    path = rundir.step_file(str(tmp_path), 0)
    tally = {"bytes_sent": 8, "bytes_recv": 8, "messages": 1, "links": [[0, 1, 8, 1]]}
    step = struct.Struct("<II" + stepfile.FIELDS_FORMAT + "I")
    with open(path, "wb") as f:
        f.write(header(version=3, steps_per_epoch=2, samples=4))
        f.write(frame(stepfile.MESSAGES, json.dumps({**tally, "round_labels": []}).encode()))
        for k in range(3):
            f.write(step.pack(step.size, stepfile.STEP, k, 0.5, 10 * k, 10 * k + 2, 10 * k + 5,
                              10 * k + 9, step.size))  # fmt: skip
    records = stepfile.read(path)
    assert [r["step"] for r in records] == [0, 1, 2]
    assert [r["epoch"] for r in records] == [0, 0, 1]
    assert all(r["bytes_sent"] == 8 and r["comm_s"] == 3e-9 for r in records)
    assert all((r["d2h_bytes"], r["h2d_bytes"], r["d2h_s"], r["h2d_s"]) == (0, 0, 0, 0)
               for r in records)  # fmt: skip


def test_copies_are_read_back_as_recorded(tmp_path):
    path = rundir.step_file(str(tmp_path), 0)
    rec = Recorder(path, 0, 3, 4)
    rec.staged(4000, 4000)
    rec.bind(())
    for step in range(2):
        rec.copy_times(1500 + step, 700)
        rec.commit(step, 0.25, 100 * step + 10, 100 * step + 20, 100 * step + 30, 100 * step + 45)
    rec.close()
    records = stepfile.read(path)
    assert [(r["d2h_bytes"], r["h2d_bytes"]) for r in records] == [(4000, 4000)] * 2
    assert [(r["d2h_s"], r["h2d_s"]) for r in records] == [(1.5e-6, 7e-7), (1.501e-6, 7e-7)]
    assert records[0]["compute_s"] == 25e-9  # the copy slots are not the step's fields


def test_a_header_without_what_steps_leave_out_is_damaged(tmp_path):
    path = rundir.step_file(str(tmp_path), 0)
    open(path, "wb").write(header(version=4))  # no steps_per_epoch, samples
    with pytest.raises(
        stepfile.StepFileError, match=r"damaged header \(steps_per_epoch, samples\)"
    ):
        stepfile.read(path)

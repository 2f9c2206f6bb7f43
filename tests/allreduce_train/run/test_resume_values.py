"""--resume compares what a setting meant, not how it was given; a checkpoint file that is
empty or cut short is passed over for the one before, and when none loads the error is one
line naming each. In one process: the checkpoints are written here."""

import re

import numpy as np
import pytest

from allreduce_train.config.options import parser
from allreduce_train.run import checkpoint
from allreduce_train.run.checkpoint import CheckpointError, Snapshot

DEFAULTS = vars(parser(speak=False).parse_args([]))
SAVED = {**DEFAULTS, "activation": "relu", "steps": 40}  # a run of the defaults, as written
WIDTHS = np.array([64, 128, 128, 10])  # what its layers resolved to on digits


def given(*argv):
    return vars(parser(speak=False).parse_args(["--resume", "runs/a", *argv]))


def test_a_setting_given_with_the_value_it_resolved_to_is_the_same_run():
    for argv in (["--layers", "64,128,128,10"], ["--momentum", "0.9"], ["--init", "he"],
                 ["--layers", "64,128,128,10", "--momentum", "0.9", "--lr", "0.05"]):  # fmt: skip
        out = checkpoint.resumed_config(SAVED, given(*argv), DEFAULTS, WIDTHS)
        assert out["layers"] is None and out["momentum"] is None  # the checkpoint's, as it was


def test_another_value_is_refused_naming_what_it_was():
    for argv, words in [
        (["--layers", "64,32,10"], "--layers was 64,128,128,10 when the checkpoint was "
         "written; a resumed run keeps it (got 64,32,10)"),
        (["--momentum", "0.5"], "--momentum was 0.9 when"),
        (["--init", "xavier"], "--init was he when"),
    ]:  # fmt: skip
        with pytest.raises(CheckpointError, match=re.escape(words)):
            checkpoint.resumed_config(SAVED, given(*argv), DEFAULTS, WIDTHS)


def test_an_async_or_adagrad_run_had_no_momentum():
    saved = {**SAVED, "mode": "async"}
    checkpoint.resumed_config(saved, given("--momentum", "0"), DEFAULTS, WIDTHS)
    with pytest.raises(CheckpointError, match="--momentum was 0.0 when"):
        checkpoint.resumed_config(saved, given("--momentum", "0.9"), DEFAULTS, WIDTHS)


def snapshot(step: int) -> Snapshot:
    return Snapshot(step, np.full(10, float(step)), {"velocity": np.zeros(10)}, (2, 3), SAVED,
                    "f" * 16)  # fmt: skip


@pytest.mark.parametrize("damage", ["empty", "cut short"])
def test_an_empty_or_cut_short_newest_falls_back_to_the_one_before(tmp_path, damage):
    for step in (10, 20):
        path = checkpoint.save(str(tmp_path), snapshot(step), keep=2)
    assert path.endswith("step-00000019.npz")  # named by its last step: 20 steps done
    final = tmp_path / "checkpoint.npz"
    checkpoint.write(str(final), snapshot(30))
    for newest in (final, tmp_path / "checkpoints" / "step-00000019.npz"):
        newest.write_bytes(b"" if damage == "empty" else newest.read_bytes()[:300])
    state = checkpoint.latest(str(tmp_path))
    assert state["step"] == 10 and state["path"].endswith("step-00000009.npz")


def test_when_no_checkpoint_loads_the_error_is_one_line_naming_each(tmp_path):
    checkpoint.save(str(tmp_path), snapshot(10), keep=2)
    (tmp_path / "checkpoints" / "step-00000009.npz").write_bytes(b"")
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(CheckpointError) as caught:
        checkpoint.latest(str(tmp_path))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"--resume {tmp_path}: no checkpoint loads")
    assert "checkpoint.npz: " in message and "step-00000009.npz: empty" in message

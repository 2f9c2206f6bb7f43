"""The run directory's JSON is strict (no NaN or Infinity tokens), and a run's damage is found
where it is read."""

import json
import math

import numpy as np
import pytest

from netsim.record import rundir


def strict(text: str):
    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_values_are_written_as_null(tmp_path):
    path = str(tmp_path / "summary.json")
    summary = {
        "test_loss": float("nan"),
        "comm_share": np.float64("inf"),
        "by_rank": [1.5, -math.inf, (np.nan, 2)],
        "traffic": {"wait_s": float("-inf"), "steps": 3, "name": "NaN"},
    }
    rundir.write_json(path, summary)
    text = open(path, encoding="utf-8").read()
    assert strict(text) == {
        "test_loss": None,
        "comm_share": None,
        "by_rank": [1.5, None, [None, 2]],
        "traffic": {"wait_s": None, "steps": 3, "name": "NaN"},
    }
    with pytest.raises(ValueError, match="not strict JSON: NaN"):  # the parser does refuse
        strict(json.dumps(summary))
    assert strict(rundir.dumps([float("nan")], separators=(",", ":"))) == [None]


def test_sound_directory_loads_without_damage(tmp_path):
    config = {
        "world_size": 1,
        "config": {"allreduce": "ring", "dtype": "float32", "record": True},
        "nparams": 4,
        "buffer_bytes": 16,
        "node_of_rank": [0],
        "total_steps": 0,
    }
    rundir.write_json(str(tmp_path / "config.json"), config)
    assert rundir.load(str(tmp_path))[0]["damage"] == []
    rundir.write_json(str(tmp_path / "summary.json"), {"steps": 2})
    config, records, summary = rundir.load(str(tmp_path))
    assert records == [[]] and summary == {"steps": 2}
    assert config["damage"] == [
        f"{rundir.step_file(str(tmp_path), 0)}: missing, holds 0 of the run's 2 steps"
    ]
    config["segments"] = [[0, 3], [3, 2]]  # covers 5 parameters, not 4
    rundir.write_json(str(tmp_path / "config.json"), config)
    with pytest.raises(rundir.RunDirError, match="bad segments"):
        rundir.load(str(tmp_path))

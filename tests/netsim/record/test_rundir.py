"""The run directory's JSON is strict: no NaN or Infinity tokens."""

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

"""`netsim predict` and `netsim sweep` of a buffer's all-reduce write their rows as CSV
(--csv), as they do for a workload's step and as `netsim nccl` does: one row per prediction,
its single-valued fields, equal to what --json says."""

import csv
import json

import pytest

from netsim.__main__ import main


def run(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr()


def test_predict_writes_its_row_as_csv_equal_to_its_json(tmp_path, capsys):
    path = tmp_path / "p.csv"
    common = ["predict", "--topology", "dgx-h100", "--params", "1000000", "--compute-ms", "2"]
    code, out = run(capsys, *common, "--json", "--csv", str(path))
    assert code == 0 and f"wrote {path}" in out.err
    figures = json.loads(out.out)
    [row] = list(csv.DictReader(path.open()))
    assert row["algorithm"] == figures["algorithm"] and int(row["world_size"]) == 256
    assert float(row["step_time_s"]) == pytest.approx(figures["step_time_s"], rel=1e-12)
    assert "bytes_sent_per_step_by_rank" not in row  # per-rank lists stay in --json


def test_sweep_writes_a_row_per_rank_count_and_algorithm(tmp_path, capsys):
    path = tmp_path / "s.csv"
    code, out = run(
        capsys, "sweep", "--topology", "dgx-h100", "--params", "1000000", "--ranks", "8,16",
        "--algorithms", "ring,tree", "--csv", str(path),
    )  # fmt: skip
    assert code == 0 and f"wrote {path}" in out.out
    rows = list(csv.DictReader(path.open()))
    assert [(r["world_size"], r["algorithm"]) for r in rows] == [
        ("8", "ring"), ("8", "tree"), ("16", "ring"), ("16", "tree"),
    ]  # fmt: skip


def test_a_csv_name_that_is_not_one_is_refused_before_anything_runs(tmp_path, capsys):
    code, out = run(capsys, "predict", "--topology", "dgx-h100", "--params", "1e6", "--csv",
                    str(tmp_path / "p.txt"))  # fmt: skip
    assert code == 2 and "--csv wants a .csv file name" in out.err
    assert not (tmp_path / "p.txt").exists()

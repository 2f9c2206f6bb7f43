"""Time to accuracy on a cluster we do not have, from two real runs: the digits MLP on 2 ranks
uncompressed and with top-k, compared by `python -m netsim compare --topology --ranks`. Each
run's predicted time to the target is the steps it needed here times its step replayed there
(the same replay in this process), and the top-k run's bucket costs its all-gather there,
less than the uncompressed all-reduce."""

import json
import subprocess
import sys

import pytest

from netsim.cluster import topology
from netsim.record import rundir
from netsim.report import traffic
from netsim.sim import predict

from conftest import ROOT, train

pytestmark = [pytest.mark.slow, pytest.mark.mpi]

METHODS = ("none", "topk:0.05")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    made = []
    for method in METHODS:
        run_dir = tmp_path_factory.mktemp("tta") / method.replace(":", "_")
        result = train(2, run_dir, "--steps", "30", "--eval-every", "10", "--compress", method,
                       "--trace-steps", "none", "--quiet")  # fmt: skip
        assert result.returncode == 0, result.output
        made.append(run_dir)
    return made


def netsim(*args):
    return subprocess.run([sys.executable, "-m", "netsim", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip


def test_compare_predicts_each_runs_time_to_the_target_on_a_modelled_cluster(runs):
    out = netsim("compare", *runs, "--topology", "ethernet-100g", "--ranks", 32, "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["compress"] for r in rows] == list(METHODS)
    target = min(r["final_accuracy"] for r in rows)  # the default
    topo = topology.load("ethernet-100g")
    steps = []
    for run_dir, row in zip(runs, rows):
        assert row["target"] == target and row["to_target"] is not None
        o = row["predicted"]
        assert (o["ranks"], o["topology"]) == (32, topo.name)
        assert o["steps_to_target"] == row["to_target"]["step"] + 1
        assert o["time_to_target_s"] == o["steps_to_target"] * o["step_s"]
        config, records, totals = rundir.load(str(run_dir))
        merged = traffic.merge(config, records, complete=totals is not None)
        step = predict.step_there(config, merged, records, topo, 32)
        assert step["step_time_s"] == o["step_s"] and step["compress_s"] == o["compress_s"]
        steps.append(step)
    none, topk = steps
    assert none["compress_s"] == 0 < topk["compress_s"]
    assert topk["buckets"][0]["network_s"] < none["buckets"][0]["network_s"]
    table = netsim("compare", *runs, "--topology", "ethernet-100g", "--ranks", 32)
    assert table.returncode == 0, table.stderr
    assert 'predicted on 32 ranks of "' in table.stdout and "time there" in table.stdout
    assert table.stdout.startswith(f"target accuracy {target:.4g} (the lowest final accuracy")

"""A run through shared memory (--transport shm) priced on its own path: the calibration's
shared-memory topology beside the file, else the built-in estimate's (said), and a GPU
cluster's links as they are; then a real run replayed (mpirun)."""

import json
from pathlib import Path

import pytest

from netsim.calibration import choose
from netsim.cluster import topology

from conftest import mpirun, read_json, train

EXAMPLE = Path(__file__).resolve().parents[3] / "docs/examples/calibrated-2vcpu-vm.toml"


def test_a_calibrated_machine_is_priced_on_its_shared_memory_path(tmp_path):
    machine = tmp_path / "box.toml"
    machine.write_text(EXAMPLE.read_text())
    topo = topology.load(str(machine))
    estimated, note = choose.shared_memory(topo, str(machine))
    assert "built-in estimate" in note and estimated.name.startswith("built-in estimate")
    assert estimated.gpus == topo.gpus and estimated.spec["compute"]["cores"] == 2
    shm = {**choose.SHM_ESTIMATE, "name": "box (shared memory)"}
    choose.shm_file(machine).write_text(topology.to_toml(shm))
    beside, note = choose.shared_memory(topo, str(machine))
    assert note is None and beside.name == "box (shared memory)"
    gpus = topology.load("dgx-h100")  # NVLink: the GPUs' own path, as it is
    assert choose.shared_memory(gpus, "dgx-h100") == (gpus, None)


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("transport", ["shm", "mpi"])
def test_replay_prices_the_path_the_run_took(tmp_path, transport):
    run_dir = tmp_path / "run"
    result = train(2, run_dir, "--layers", "64,256,256,10", "--steps", "40", "--allreduce",
                   "ring", "--transport", transport, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.output
    assert read_json(run_dir / "config.json")["config"]["transport"] == transport
    replay = mpirun(
        0, ["-m", "netsim", "replay", str(run_dir), "--topology", str(EXAMPLE), "--json"], 60
    )
    assert replay.returncode == 0, replay.output
    out = json.loads(replay.stdout)
    assert out["transport"] == transport
    assert ("shared memory" in out["topology"]) == (transport == "shm")
    assert bool(out["notes"]) == (transport == "shm")  # no shm file beside the example
    # how close is measured on a quiet machine, not here: another job on the cores can
    # make the measured all-reduce 100 times the prediction
    assert out["allreduce_time_s_median"] > 0 and out["measured"]["allreduce_time_s_median"] > 0

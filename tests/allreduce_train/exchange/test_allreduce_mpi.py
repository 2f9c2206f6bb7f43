"""Every all-reduce over real MPI, with one channel and with several: equals the reference
sum (as MPI_Allreduce does) and leaves every rank with bit-identical results."""

import pytest

from netsim import algorithms

from conftest import mpirun, program, read_json

pytestmark = [pytest.mark.mpi, pytest.mark.slow]


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
def test_every_algorithm_equals_reference_bit_identical_on_all_ranks(p, tmp_path):
    out = tmp_path / "cases"
    result = mpirun(p, [program("allreduce_check.py"), str(out)], timeout=120)
    assert result.returncode == 0, result.output
    per_rank = [read_json(f"{out}.{r}") for r in range(p)]
    assert {c["n"] for c in per_rank[0]} >= {0, 1, p + 1, 97, 10**6}
    assert {c["algorithm"] for c in per_rank[0]} == set(algorithms.ALGORITHMS)
    assert {c["channels"] for c in per_rank[0] if c["algorithm"] == "ring"} == {1, 2, 3}
    for cases in zip(*per_rank):
        case = cases[0]
        label = f"{case['algorithm']} x{case['channels']} {case['dtype']} n={case['n']}"
        assert len({(c["algorithm"], c["channels"], c["dtype"], c["n"]) for c in cases}) == 1
        assert all(c["error"] <= 1.0 for c in cases), f"off the reference sum: {label}"
        assert case["result_dtype"] == case["dtype"], label
        # Our schedules promise bit-identical results; for MPI_Allreduce the standard only
        # advises it, so whether it does is the library's business.
        if algorithms.get(case["algorithm"]).scheduled:
            assert len({c["hash"] for c in cases}) == 1, f"ranks disagree bitwise: {label}"

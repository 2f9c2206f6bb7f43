"""Every all-reduce over real MPI, with one channel and with several: equals the reference
sum (as MPI_Allreduce does) and leaves every rank with bit-identical results."""

import pytest

from netsim import algorithms

from conftest import mpirun, program, read_json

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

LAUNCHED = 5
DTYPES = ("float32", "float64")


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """One launch of 5 ranks checks every world of 1 to 5 of them in turn (a launch each
    started 15 Pythons where 5 do)."""
    out = tmp_path_factory.mktemp("allreduce") / "cases"
    result = mpirun(LAUNCHED, [program("allreduce_check.py"), str(out)], timeout=180)
    assert result.returncode == 0, result.output
    return out


@pytest.mark.parametrize("p", range(1, LAUNCHED + 1))
def test_every_algorithm_equals_reference_bit_identical_on_all_ranks(p, cases):
    per_rank = [read_json(f"{cases}.{p}.{r}") for r in range(p)]
    assert {c["world_size"] for c in per_rank[0]} == {p}
    lengths = {dtype: {c["n"] for c in per_rank[0] if c["dtype"] == dtype} for dtype in DTYPES}
    assert lengths["float32"] >= {0, 1, p + 1, 97, 2**18}
    assert lengths["float64"] >= {0, 1, p + 1, 97}
    assert {c["algorithm"] for c in per_rank[0]} == set(algorithms.ALGORITHMS)
    assert {c["channels"] for c in per_rank[0] if c["algorithm"] == "ring"} == {1, 2, 3}
    for cases_ in zip(*per_rank):
        case = cases_[0]
        label = f"{case['algorithm']} x{case['channels']} {case['dtype']} n={case['n']}"
        assert len({(c["algorithm"], c["channels"], c["dtype"], c["n"]) for c in cases_}) == 1
        assert all(c["error"] <= 1.0 for c in cases_), f"off the reference sum: {label}"
        assert case["result_dtype"] == case["dtype"], label
        # Our schedules promise bit-identical results; for MPI_Allreduce the standard only
        # advises it, so whether it does is the library's business.
        if algorithms.get(case["algorithm"]).scheduled:
            assert len({c["hash"] for c in cases_}) == 1, f"ranks disagree bitwise: {label}"

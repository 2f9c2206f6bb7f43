"""The ring all-reduce over real MPI: equals the reference sum and MPI_Allreduce, and leaves
every rank with bit-identical results."""

import pytest

from conftest import mpirun, program, read_json

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
def test_ring_equals_reference_and_mpi_allreduce_bit_identical_on_all_ranks(p, tmp_path):
    out = tmp_path / "cases"
    result = mpirun(p, [program("allreduce_check.py"), str(out)], timeout=120)
    assert result.returncode == 0, result.output
    per_rank = [read_json(f"{out}.{r}") for r in range(p)]
    lengths = {c["n"] for c in per_rank[0]}
    assert {0, 1, p + 1, 97, 10**6} <= lengths
    for cases in zip(*per_rank):
        case = cases[0]
        label = f"{case['dtype']} n={case['n']}"
        assert all(c["ring_error"] <= 1.0 for c in cases), f"ring off the reference sum: {label}"
        assert all(c["mpi_error"] <= 1.0 for c in cases), f"MPI_Allreduce off the reference: {label}"
        assert case["ring_dtype"] == case["dtype"]
        assert len({c["ring_hash"] for c in cases}) == 1, f"ranks disagree bitwise: {label}"

"""launch.clusters: the exact argv and environment each launcher gets for N nodes x G ranks
per node, its one-line errors, and hostfiles read and written. Pure functions: no MPI and no
other host is needed. The command line and the Slurm example: test_clusters_cli.py."""

import ast
import re
import sys
from pathlib import Path

import pytest

from launch import clusters
from launch.clusters import Launch

ROOT = Path(__file__).resolve().parents[2]
HOSTFILE = ROOT / "launch" / "examples" / "hostfile"
CMD = ["python", "-m", "allreduce_train", "--steps", "3"]
ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def test_mpich_with_hosts_env_and_iface():
    got = clusters.mpich_argv(
        CMD, ["node001", "node002"], 8, env={"OMP_NUM_THREADS": "1", "A": "x y"}, iface="ib0"
    )
    assert got == Launch(
        ["mpiexec", "-hosts", "node001:8,node002:8", "-ppn", "8"]
        + ["-genv", "OMP_NUM_THREADS", "1", "-genv", "A", "x y", "-iface", "ib0", "-n", "16"]
        + CMD
    )
    assert got.env == {}


def test_mpich_with_a_hostfile_and_a_launcher_of_its_own():
    got = clusters.mpich_argv(
        CMD, ["a", "b", "c"], 4, launcher=["/opt/mpich/bin/mpiexec"], hostfile="hosts"
    )
    assert got.argv == ["/opt/mpich/bin/mpiexec", "-f", "hosts", "-ppn", "4", "-n", "12", *CMD]
    assert clusters.mpich_argv(CMD, ["solo"], 1).argv == ["mpiexec", "-hosts", "solo:1"] + [
        "-ppn",
        "1",
        "-n",
        "1",
        *CMD,
    ]


def test_openmpi_not_as_root():
    got = clusters.openmpi_argv(CMD, ["node001", "node002"], 8, env={"OMP_NUM_THREADS": "1"})
    assert got == Launch(
        ["mpirun", "--host", "node001:8,node002:8", "-np", "16", "--map-by", "ppr:8:node"]
        + ["--oversubscribe", "-x", "OMP_NUM_THREADS=1", *CMD]
    )


def test_openmpi_as_root_adds_the_flag_and_both_variables():
    got = clusters.openmpi_argv(CMD, ["n1", "n2"], 2, hostfile=Path("hf"), as_root=True)
    assert got.argv == [
        "mpirun",
        "--hostfile",
        "hf",
        "-np",
        "4",
        "--map-by",
        "ppr:2:node",
        "--oversubscribe",
        "--allow-run-as-root",
        *CMD,
    ]
    assert got.env == ROOT_ENV
    assert got.environ({"PATH": "/bin", "OMPI_ALLOW_RUN_AS_ROOT": "0"}) == {"PATH": "/bin"} | (
        ROOT_ENV
    )


def test_srun_with_a_nodelist_export_and_mpi():
    got = clusters.srun_argv(
        CMD, ["node001", "node002"], 8, env={"OMP_NUM_THREADS": "1", "B": "2"}, mpi="pmix"
    )
    assert got.argv == [
        "srun",
        "--nodes",
        "2",
        "--ntasks-per-node",
        "8",
        "--ntasks",
        "16",
        "--nodelist",
        "node001,node002",
        "--export=ALL,OMP_NUM_THREADS=1,B=2",
        "--mpi=pmix",
        *CMD,
    ]
    # also set in srun's own environment: under ALL the caller's value would win otherwise
    assert got.env == {"OMP_NUM_THREADS": "1", "B": "2"}


def test_srun_inside_an_allocation_takes_a_node_count_and_omits_the_rest():
    got = clusters.srun_argv(CMD, 4, 8)
    assert got == Launch(["srun", "--nodes", "4", "--ntasks-per-node", "8", "--ntasks", "32"] + CMD)
    with pytest.raises(ValueError, match="number of nodes must be >= 1"):
        clusters.srun_argv(CMD, 0, 8)
    with pytest.raises(ValueError, match="comma-separated"):
        clusters.srun_argv(CMD, 2, 8, env={"LIST": "a,b"})
    with pytest.raises(ValueError, match="plugin name"):
        clusters.srun_argv(CMD, 2, 8, mpi="pmi 2")


@pytest.mark.parametrize("build", [clusters.mpich_argv, clusters.openmpi_argv, clusters.srun_argv])
@pytest.mark.parametrize(
    "hosts, g, env, message",
    [
        ([], 8, None, "no hosts given"),
        (["a"], 0, None, "ranks per node must be >= 1, got 0"),
        (["a"], True, None, "ranks per node must be an integer"),
        ([""], 8, None, "bad host name ''"),
        (["node 1"], 8, None, "bad host name 'node 1'"),
        (["a,b"], 8, None, "bad host name 'a,b'"),
        (["a", "b", "a"], 8, None, "host a is listed twice"),
        ("a,b", 8, None, "list of names, got the string"),
        (["a"], 8, {"1X": "v"}, "bad environment variable name '1X'"),
        (["a"], 8, {"A-B": "v"}, "bad environment variable name 'A-B'"),
    ],
)
def test_bad_input_is_one_clear_value_error(build, hosts, g, env, message):
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        build(CMD, hosts, g, env)
    assert "\n" not in str(caught.value)


def test_an_empty_command_or_launcher_is_refused():
    with pytest.raises(ValueError, match="command must be a non-empty list"):
        clusters.mpich_argv([], ["a"], 1)
    with pytest.raises(ValueError, match="launcher must be a non-empty list"):
        clusters.openmpi_argv(CMD, ["a"], 1, launcher=[])


def test_hostfiles_in_both_formats_comments_and_blank_lines():
    mpich = "# two nodes\nnode001:8   # eight GPUs\n\n  node002:4\nnode003\n"
    assert clusters.read_hostfile(mpich) == [("node001", 8), ("node002", 4), ("node003", 1)]
    openmpi = "node001 slots=8\nnode002 slots=2 max_slots=4 # c\nnode003 max_slots=3\nnode004\n"
    assert clusters.read_hostfile(openmpi) == [
        ("node001", 8),
        ("node002", 2),
        ("node003", 3),
        ("node004", 1),
    ]
    assert clusters.read_hostfile(HOSTFILE.read_text()) == [("node001", 8), ("node002", 8)]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "a:8\nb:x\n",
            "hostfile line 2: expected 'host', 'host:slots' or 'host slots=N', got 'b:x'",
        ),
        ("# c\n\na:0\n", "hostfile line 3:"),
        ("a slots=8\nb cpus=4\n", "hostfile line 2:"),
        ("a slots=\n", "hostfile line 1:"),
        ("a slots=2 slots=3\n", "hostfile line 1:"),
        ("a:2:ib0\n", "hostfile line 1:"),
        ("a:8\n\nb:8\na:8\n", "hostfile line 4: a is listed twice (first on line 1)"),
        ("# only comments\n\n", "hostfile lists no hosts"),
    ],
)
def test_bad_hostfile_lines_are_named_by_number(text, message):
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        clusters.read_hostfile(text)
    assert "\n" not in str(caught.value)


def test_hostfile_flavour_tells_whose_format_a_file_is_in():
    assert clusters.hostfile_flavour("# c\na:8\nb:8 # d\n") == "mpich"
    assert clusters.hostfile_flavour("a slots=8\nb max_slots=2\n") == "openmpi"
    assert clusters.hostfile_flavour("a\n\nb # no counts\n") == "either"
    assert clusters.hostfile_flavour("a:8\nb slots=8\n") == "mixed"


def test_write_hostfile_in_each_flavour_reads_back():
    assert clusters.write_hostfile(["n1", "n2"], 8, "mpich") == "n1:8\nn2:8\n"
    assert clusters.write_hostfile(["n1", "n2"], 8, "openmpi") == "n1 slots=8\nn2 slots=8\n"
    for flavour in clusters.FLAVOURS:
        text = clusters.write_hostfile(["n1", "n2"], 4, flavour)
        assert clusters.read_hostfile(text) == [("n1", 4), ("n2", 4)]
    with pytest.raises(ValueError, match="flavour must be one of mpich, openmpi"):
        clusters.write_hostfile(["n1"], 8, "slurm")


def test_the_launch_package_imports_only_the_standard_library_and_the_emulator_netsim():
    """What netsim's calibration imports of launch is the standard library alone; the emulator
    also reads its topology through netsim's loader (tests/test_architecture.py: which one)."""
    for path in (ROOT / "launch").rglob("*.py"):
        ours = {"launch", "netsim"} if path.name == "emulate.py" else {"launch"}
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in ours, f"{path}: {name}"

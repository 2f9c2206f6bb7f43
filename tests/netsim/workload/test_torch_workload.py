"""--workload torch:MODULE:CALLABLE: a PyTorch model from the command line, its layers
from_torch's, saved as a workload file that reads back without torch, and every bad input
(torch missing, no such module or file, no such callable, not a module, a failing import,
call or forward, a bad --input-shape) one line and exit code 2."""

import pytest

from netsim import __main__ as cli
from netsim.errors import InputError
from netsim.workload import catalog, fileformat, importers

from conftest import mpirun

NET = """
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 8)
        self.head = nn.Linear(8, 100)

    def forward(self, ids):
        return self.head(self.embed(ids))


def not_a_module():
    return 3


def broken():
    raise RuntimeError("no weights here")
"""
# the subprocess's python without torch, whatever is installed
WITHOUT_TORCH = (
    "import sys; sys.modules['torch'] = None; from netsim.__main__ import main; "
    "sys.exit(main(sys.argv[1:]))"
)
PREDICT = ["predict", "--topology", "hgx-h100", "--ranks", "8"]


@pytest.fixture
def net(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(NET)
    return path


def build(name: str):
    namespace = {}
    exec(NET, namespace)
    return namespace[name]()


def one_line(result) -> str:
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("netsim: error: "), result.stderr
    return result.stderr


@pytest.mark.slow  # importing torch
def test_a_torch_model_by_name_is_from_torchs_layers(net):
    torch = pytest.importorskip("torch")
    w = catalog.resolve(f"torch:{net}:Net", input_shape=(3, 8, 8), batch=4)
    assert w.layers == importers.from_torch(build("Net"), torch.zeros(4, 3, 8, 8), 4).layers
    assert w.batch == 4 and "forward of 4 x 3,8,8 zeros" in w.source
    assert fileformat.loads(fileformat.to_json(w), "json") == w  # the saved file's content
    plain = catalog.resolve(f"torch:{net}:Net")  # no example: 2 x weights per sample
    assert plain.layers == importers.from_torch(build("Net")).layers
    tokens = catalog.resolve(f"torch:{net}:Tokens", seq_len=6, batch=2)  # int64 token ids
    example = torch.zeros(2, 6, dtype=torch.long)
    assert tokens.layers == importers.from_torch(build("Tokens"), example, 2).layers


def test_torch_options_are_refused_where_they_mean_nothing(net):
    for spec, options, words in [
        ("resnet-50", {"input_shape": (3,)}, "--input-shape is for a PyTorch model"),
        ("resnet-50", {"measure": True}, "--measure is for a PyTorch model"),
        (f"torch:{net}:Net", {"measure": True}, "--measure times an example's forward"),
        (f"torch:{net}:Net", {"input_shape": (3,), "seq_len": 4}, "not both"),
        (f"torch:{net}", {}, "want torch:MODULE:CALLABLE"),
    ]:
        with pytest.raises(InputError, match=words):
            catalog.resolve(spec, **options)


@pytest.mark.slow
def test_predict_a_torch_model_and_again_from_its_saved_file_without_torch(net, tmp_path):
    torch = pytest.importorskip("torch")
    saved = tmp_path / "net.toml"
    model = [f"torch:{net}:Net", "--input-shape", "3,8,8", "--batch", "4"]
    first = mpirun(0, ["-m", "netsim", *PREDICT, "--workload", *model,
                       "--save-workload", str(saved)])  # fmt: skip
    assert first.returncode == 0, first.output
    assert first.stdout.startswith("Net: 2,682 parameters") and "  step " in first.stdout
    assert f"wrote {saved}" in first.stdout
    loaded = fileformat.load(str(saved))
    assert loaded.layers == importers.from_torch(build("Net"), torch.zeros(4, 3, 8, 8), 4).layers
    again = mpirun(0, ["-c", WITHOUT_TORCH, *PREDICT, "--workload", str(saved)])
    assert again.returncode == 0, again.output
    assert again.stdout == first.stdout.replace(f"wrote {saved}\n", "")


CASES = [  # (--workload and options, words, whether torch must be there to reach the error)
    (["torch:{net}:Net", "--input-shape", "3,x"], "--input-shape: one sample's dimensions", 0),
    (["torch:{dir}/missing.py:Net"], "no such file: ", 0),
    (["torch:no_such_module_here:Net"], "no module named 'no_such_module_here'", 1),
    (["torch:{net}:Nte"], "has no 'Nte' (did you mean 'Net'?)", 1),
    (["torch:{net}:not_a_module"], "not_a_module() returned int, not a torch.nn.Module", 1),
    (
        ["torch:{net}:Net", "--input-shape", "3,5,5"],
        "the forward of Net on an input of shape (1, 3, 5, 5) failed: RuntimeError: mat1",
        1,
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("argv, words, needs_torch", CASES)
def test_a_bad_torch_workload_is_one_line(net, tmp_path, argv, words, needs_torch):
    if needs_torch:
        pytest.importorskip("torch")
    argv = [a.format(net=net, dir=tmp_path) for a in argv]
    result = mpirun(0, ["-m", "netsim", *PREDICT, "--workload", *argv])
    assert words in one_line(result)


@pytest.mark.slow  # importing torch
def test_the_users_code_failing_is_one_line_naming_it(net, tmp_path, capsys):
    pytest.importorskip("torch")
    (tmp_path / "fails.py").write_text("1 / 0\n")
    for spec, words in [
        (f"torch:{net}:broken", "broken() raised RuntimeError: no weights here"),
        (f"torch:{tmp_path}/fails.py:Net", "fails.py raised ZeroDivisionError: division by zero"),
    ]:
        assert cli.main([*PREDICT, "--workload", spec]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and words in err, err


@pytest.mark.slow
def test_without_torch_a_torch_workload_says_what_to_install(net):
    result = mpirun(0, ["-c", WITHOUT_TORCH, *PREDICT, "--workload", f"torch:{net}:Net"])
    assert "needs torch (pip install torch)" in one_line(result)


@pytest.mark.slow  # importing torch
def test_the_readmes_torch_example_is_the_model_it_prints():
    """README runs `predict --workload torch:docs/examples/mynet.py:small_cnn`: that file
    builds the model whose parameters README's output counts."""
    pytest.importorskip("torch")
    from conftest import ROOT

    w = catalog.resolve(f"torch:{ROOT / 'docs/examples/mynet.py'}:small_cnn")
    assert sum(layer.params for layer in w.layers) == 429_092
    assert "429,092 parameters" in (ROOT / "README.md").read_text()

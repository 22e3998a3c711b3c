"""Every failure of the ppl-lvm command is one line on stderr that names the fix, status 2.

Each case here once gave a traceback, a wrong result or an error only after the work; the
command is run in-process, as the console script runs it.
"""

from __future__ import annotations

import gzip
import sys

import numpy as np
import pytest
import torch

import ppl_lvm.datasets
from ppl_lvm.cli import main


def run(argv: list[str]) -> int:
    """The exit status of ``ppl-lvm argv``: main's return value, or argparse's SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def error_line(capsys, command: str) -> str:
    """The one line on stderr, checked to be ``ppl-lvm COMMAND: error: ...``."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ppl-lvm {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_work(monkeypatch):
    """Any data loading fails the test: the command must refuse before any work."""

    def work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(ppl_lvm.datasets, "load", work)
    monkeypatch.setattr(ppl_lvm.datasets, "from_file", work)


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """tmp_path as the current folder, with sys.path restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


FIT = ["fit", "--model", "gmm", "--components", "2"]

# -- --data files that cannot be read --------------------------------------------------------


def _corrupt_npy(path):
    path.write_bytes(np.random.default_rng(0).bytes(300))


def _truncated_npy(path):
    np.save(path, np.ones((50, 4)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _not_gzip(path):
    path.write_bytes(b"these bytes are not gzip-compressed at all\n" * 4)


def _broken_gzip(path):
    path.write_bytes(gzip.compress(b"1,2,3\n" * 200)[:30])


@pytest.mark.parametrize(
    "name, write, phrase",
    [
        ("bad.npy", _corrupt_npy, ".npy"),
        ("short.npy", _truncated_npy, "truncated"),
        ("data.npy.gz", _not_gzip, "not gzip-compressed"),
        ("data.csv.gz", _broken_gzip, "gzip"),
    ],
)
def test_unreadable_data_file_is_one_line_naming_it(name, write, phrase, user_dir, capsys):
    """A corrupt, truncated or falsely gzipped --data file names the path and the problem;
    never numpy's advice to allow pickles."""
    write(user_dir / name)
    assert run([*FIT, "--data", name]) == 2
    line = error_line(capsys, "fit")
    assert "--data" in line and repr(name) in line and phrase in line
    assert "allow_pickle" not in line


def test_data_folder_is_refused_before_any_work(user_dir, capsys, no_work):
    (user_dir / "folder").mkdir()
    assert run([*FIT, "--data", "folder"]) == 2
    assert "is a folder; pass one data file" in error_line(capsys, "fit")


# -- checks before any work --------------------------------------------------------------------


def test_out_that_is_a_file_is_refused_before_any_work(user_dir, capsys, no_work):
    (user_dir / "notes.txt").write_text("keep me")
    assert run([*FIT, "--data", "digits", "--out", "notes.txt"]) == 2
    assert "is an existing file, not a folder" in error_line(capsys, "fit")
    assert (user_dir / "notes.txt").read_text() == "keep me"
    assert run([*FIT, "--data", "digits", "--out", "notes.txt/inner"]) == 2
    assert "which is a file" in error_line(capsys, "fit")


@pytest.mark.parametrize("command", ["fit", "demo"])
def test_unknown_device_is_refused_before_any_work(command, user_dir, capsys, no_work):
    argv = [*FIT, "--data", "digits"] if command == "fit" else ["demo", "--quick"]
    assert run([*argv, "--device", "bogus"]) == 2
    line = error_line(capsys, command)
    assert "--device 'bogus' is not a torch device" in line and "cpu" in line
    assert capsys.readouterr().out == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused_before_any_work(user_dir, capsys, no_work):
    assert run([*FIT, "--data", "digits", "--device", "cuda"]) == 2
    line = error_line(capsys, "fit")
    assert "CUDA is not available" in line and "leave --device out" in line


def test_every_engine_name_is_checked_before_any_work(user_dir, capsys, no_work):
    argv = ["compare", "--model", "gmm", "--data", "digits", "--engine", "enumeration,bogus"]
    assert run(argv) == 2
    line = error_line(capsys, "compare")
    assert "--engine 'bogus' is unknown" in line and "enumeration" in line


@pytest.mark.parametrize(
    "flag, value, phrase",
    [
        ("--limit", "0", "leave --limit out to use every row"),
        ("--limit", "-25", "at least 1"),
        ("--epochs", "0", "at least 1"),
        ("--components", "0", "at least 1"),
        ("--latent", "-1", "at least 1"),
        ("--samples", "0", "at least 1"),
        ("--num-eval", "0", "at least 1"),
        ("--particles", "0", "at least 1"),
        ("--limit", "2.5", "whole number"),
        ("--lr", "0", "above 0"),
        ("--lr", "-1e-3", "above 0"),
        ("--lr", "nan", "above 0"),
        ("--seed", "-1", "from 0 to"),
    ],
)
def test_counts_and_rates_must_be_positive(flag, value, phrase, user_dir, capsys, no_work):
    assert run([*FIT, "--data", "digits", f"{flag}={value}"]) == 2
    line = error_line(capsys, "fit")
    assert f"argument {flag}" in line and phrase in line and "--help" in line


# -- --load ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gmm_file(tmp_path_factory):
    """model.pt of a 2-component mixture fitted to 100 digits."""
    out = tmp_path_factory.mktemp("gmm")
    assert main([*FIT, "--data", "digits", "--limit", "100", "--out", str(out)]) == 0
    return out / "model.pt"


def test_load_a_folder_is_refused_before_any_work(gmm_file, capsys, no_work):
    argv = ["compare", "--model", "gmm", "--data", "digits", "--load", str(gmm_file.parent)]
    capsys.readouterr()
    assert run(argv) == 2
    line = error_line(capsys, "compare")
    assert "is a folder" in line and "model.pt" in line


@pytest.mark.parametrize("kind", ["text", "truncated"])
def test_load_a_file_that_is_not_parameters(kind, gmm_file, user_dir, capsys):
    path = user_dir / f"{kind}.pt"
    if kind == "text":
        path.write_text("these are my notes, not parameters\n")
    else:
        data = gmm_file.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    argv = ["compare", "--model", "gmm", "--components", "2", "--data", "digits"]
    assert run([*argv, "--limit", "100", "--load", str(path)]) == 2
    line = error_line(capsys, "compare")
    assert f"--load {str(path)!r} cannot be read" in line and "ppl-lvm fit" in line
    assert "weights_only" not in line and "allow_pickle" not in line


def test_load_another_models_parameters(gmm_file, capsys):
    capsys.readouterr()
    argv = ["diagnose", "--model", "ppca", "--data", "digits", "--limit", "100"]
    assert run([*argv, "--load", str(gmm_file)]) == 2
    line = error_line(capsys, "diagnose")
    assert "does not fit --model ppca" in line and "missing" in line and "same --model" in line
    # the right model with the wrong size
    argv = ["diagnose", "--model", "gmm", "--components", "3", "--data", "digits"]
    assert run([*argv, "--limit", "100", "--load", str(gmm_file)]) == 2
    assert "has shape" in error_line(capsys, "diagnose")


# -- --model module:attribute ------------------------------------------------------------------

STORY = """
import pyro, pyro.distributions as dist, torch
def model(x):
    with pyro.plate('data', x.shape[0]):
        z = pyro.sample('z', dist.Normal(torch.zeros(()), 1.0))
        pyro.sample('x', dist.Normal(z.unsqueeze(-1), 1.0).to_event(1), obs=x)
def guide(x, mask=None):
    with pyro.plate('data', x.shape[0]):
        pyro.sample('z', dist.Normal(x[:, 0] / 2, 0.5 ** 0.5))
def make(ds):
    assert ds.dim == 1
    return (model, guide)
"""


@pytest.fixture
def data_file(user_dir):
    np.save(user_dir / "data.npy", np.random.default_rng(0).normal(size=(30, 1)))
    return "data.npy"


@pytest.mark.parametrize(
    "source, phrases",
    [
        ("import torch\nraise RuntimeError('no GPU here')\n", ["RuntimeError: no GPU here"]),
        ("def model(x):\n    return x +\n", ["SyntaxError", "line 2"]),
        ("import not_a_package_anyone_has\n", ["'not_a_package_anyone_has'", "not installed"]),
        ("import sys\nsys.exit(3)\n", ["sys.exit()", "__main__"]),
    ],
    ids=["raises", "syntax", "missing-dependency", "exits"],
)
def test_user_module_that_fails_to_import(source, phrases, data_file, user_dir, capsys, request):
    """A module that raises, has a syntax error, lacks a dependency or exits when imported."""
    name = f"cli_broken_{request.node.callspec.id.replace('-', '_')}"
    (user_dir / f"{name}.py").write_text(source)
    assert run(["fit", "--model", f"{name}:model", "--data", data_file]) == 2
    line = error_line(capsys, "fit")
    assert f"--model '{name}:model'" in line
    for phrase in phrases:
        assert phrase in line


def test_one_argument_model_function_is_a_story_not_a_factory(data_file, user_dir, capsys):
    """def model(x) is a Pyro model (run by the engines), never called with the Dataset; a
    function whose first parameter is named ds is the factory."""
    (user_dir / "cli_story_onearg.py").write_text(STORY)
    argv = ["compare", "--data", data_file, "--engine", "is-prior", "--particles", "50"]
    assert run([*argv, "--model", "cli_story_onearg:model", "--out", "a"]) == 0
    assert "IS prior" in capsys.readouterr().out
    argv = ["compare", "--data", data_file, "--engine", "is-guide", "--particles", "50"]
    assert run([*argv, "--model", "cli_story_onearg:make", "--out", "b"]) == 0
    assert "IS guide" in capsys.readouterr().out


def test_model_with_the_only_parameter_is_fitted_and_saved(data_file, user_dir, capsys):
    """A pyro.param in the model (none in the guide) is found, fitted, saved and reloaded."""
    (user_dir / "cli_story_param.py").write_text(
        "import pyro, pyro.distributions as dist, torch\n"
        "def model(x, mask=None):\n"
        "    loc = pyro.param('loc', torch.tensor(0.0))\n"
        "    with pyro.plate('data', x.shape[0]):\n"
        "        z = pyro.sample('z', dist.Normal(torch.zeros(()), 1.0))\n"
        "        pyro.sample('x', dist.Normal((loc + z).unsqueeze(-1), 1.0).to_event(1), obs=x)\n"
        "def guide(x, mask=None):\n"
        "    with pyro.plate('data', x.shape[0]):\n"
        "        pyro.sample('z', dist.Normal(torch.zeros(x.shape[0]), 1.0))\n"
        "pair = (model, guide)\n"
    )
    np.save(user_dir / "shifted.npy", 3.0 + np.random.default_rng(0).normal(size=(60, 1)))
    common = ["--model", "cli_story_param:pair", "--data", "shifted.npy"]
    assert run(["fit", *common, "--epochs", "30", "--lr", "0.05", "--out", "fit"]) == 0
    assert "no parameters to learn" not in capsys.readouterr().out
    state = torch.load(user_dir / "fit" / "model.pt", weights_only=True)
    assert set(state) == {"pyro.param:loc"} and float(state["pyro.param:loc"]) > 0.5
    argv = ["compare", *common, "--engine", "is-prior", "--particles", "20", "--out", "cmp"]
    assert run([*argv, "--load", "fit/model.pt"]) == 0


# -- seeds, titles, small data -----------------------------------------------------------------


def test_the_same_seed_gives_the_same_network(user_dir, capsys):
    """--seed seeds the network's initialisation too: two VAE fits save identical tensors."""
    argv = ["fit", "--model", "vae", "--data", "digits", "--limit", "64", "--latent", "2"]
    for out in ("one", "two"):
        assert run([*argv, "--epochs", "1", "--seed", "7", "--out", out]) == 0
    one = torch.load(user_dir / "one" / "model.pt", weights_only=True)
    two = torch.load(user_dir / "two" / "model.pt", weights_only=True)
    assert one.keys() == two.keys() and len(one) > 2
    for key in one:
        assert torch.equal(one[key], two[key]), key


def test_dollar_in_the_data_name_is_printed_not_parsed(user_dir, capsys):
    """A file name with $ signs reaches the figure's title as text, not mathtext."""
    name = "cost$_$data.npy"
    np.save(user_dir / name, np.random.default_rng(0).normal(size=(40, 3)))
    argv = ["compare", "--model", "gmm", "--components", "2", "--data", name]
    assert run([*argv, "--engine", "enumeration", "--out", "cmp"]) == 0
    assert (user_dir / "cmp" / "compare.png").is_file()


def test_complete_on_a_few_rows(user_dir, capsys):
    """--limit 3 hides one row and completes it; --limit 1 is refused, naming --limit."""
    argv = ["complete", "--model", "gmm", "--components", "1", "--data", "digits"]
    assert run([*argv, "--limit", "3", "--samples", "2", "--out", "done"]) == 0
    assert "completed" in capsys.readouterr().out
    assert run([*argv, "--limit", "1", "--out", "none"]) == 2
    assert "raise --limit" in error_line(capsys, "complete")


# -- help, and the last resort -----------------------------------------------------------------


@pytest.mark.parametrize("command", ["demo", "datasets", "fit", "compare", "complete", "diagnose"])
def test_help_has_description_example_and_defaults(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "example:" in text and f"\n  ppl-lvm {command}" in text
    if command in ("fit", "compare", "complete", "diagnose"):
        for name in ppl_lvm.datasets.KNOWN:
            assert name in text
        for word in ("gmm", "vae", "enumeration", "meanfield", "(default: 10)", "factory"):
            assert word in text
    if command == "demo":
        assert "(default: demo_out)" in text


def test_unexpected_exception_is_one_line_asking_for_a_report(monkeypatch, user_dir, capsys):
    import ppl_lvm.cli.commands

    def boom(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(ppl_lvm.cli.commands, "load_data", boom)
    assert run([*FIT, "--data", "digits"]) == 2
    line = error_line(capsys, "fit")
    assert "RuntimeError: boom second line" in line and "this is a bug" in line


def test_ctrl_c_is_status_130(monkeypatch, user_dir, capsys):
    import ppl_lvm.cli.commands

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(ppl_lvm.cli.commands, "load_data", interrupted)
    assert run([*FIT, "--data", "digits"]) == 130
    assert capsys.readouterr().err.strip() == "ppl-lvm fit: interrupted"

"""The ppl-lvm command, end to end with tiny settings."""

from __future__ import annotations

import matplotlib.image as mpimg
import pytest

from ppl_lvm.cli import main


def test_demo_quick_writes_figures(tmp_path, capsys):
    """`ppl-lvm demo --quick` describes every data set and writes figures that open."""
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("digits", "mnist5k", "faces", "dna", "toy2d"):
        assert name in out
    assert "cluster purity" in out and "nats per image" in out
    figs = ("mnist_samples.png", "mnist_top_half_missing.png", "toy2d.png", "faces.png")
    for fig in (*figs, "digits_mixture_means.png"):
        img = mpimg.imread(tmp_path / fig)
        assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
        assert img[..., :3].std() > 0.01  # not a blank canvas


def test_bad_argument_is_one_line(capsys):
    """An unknown subcommand exits 2 with a usage line, not a traceback."""
    with pytest.raises(SystemExit) as exc:
        main(["nonsense"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and "Traceback" not in err


def test_demo_quick_writes_a_self_contained_report(tmp_path):
    """The report embeds every figure as a PNG and holds the data, comparison and VAE tables;
    the mixture posterior is saved as NetCDF that ArviZ reads back."""
    import re

    import arviz as az

    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)
    for name in ("digits_mixture_means.png", "vae_samples.png", "completions.png"):
        assert name in images
    assert images.count("compare.png") == 2  # the mixture's and the VAE's comparisons
    assert page.count("<table") >= 3
    for heading in ("The data", "A mixture", "variational autoencoder", "Comparing", "Completing"):
        assert heading in page
    assert "Enumeration" in page and "IS prior" in page
    idata = az.from_netcdf(str(tmp_path / "digits_mixture_posterior.nc"))
    assert "posterior" in idata.groups() and idata.posterior["z"].shape[-1] == 1797


def test_fit_then_compare_complete_diagnose(tmp_path, capsys):
    """fit saves parameters; compare, complete and diagnose reuse them with --load."""
    import arviz as az
    import numpy as np

    common = ["--model", "gmm", "--data", "digits", "--components", "3", "--limit", "300"]
    out = tmp_path / "fit"
    assert main(["fit", *common, "--out", str(out)]) == 0
    assert (out / "model.pt").is_file()
    load = ["--load", str(out / "model.pt")]
    capsys.readouterr()
    assert (
        main(
            [
                "compare",
                *common,
                *load,
                "--engine",
                "enumeration,is-prior",
                "--out",
                str(tmp_path / "cmp"),
                "--particles",
                "500",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "Enumeration" in text and "IS prior, K=500" in text
    assert (tmp_path / "cmp" / "compare.png").is_file()
    assert (
        main(["complete", *common, *load, "--out", str(tmp_path / "done"), "--samples", "4"]) == 0
    )
    text = capsys.readouterr().out
    assert "RMSE" in text
    saved = np.load(tmp_path / "done" / "completions.npz")
    assert saved["samples"].shape[0] == 4 and saved["mean"].shape[1] == 64
    assert (tmp_path / "done" / "completions.png").is_file()
    assert (
        main(
            [
                "diagnose",
                *common,
                *load,
                "--out",
                str(tmp_path / "diag"),
                "--samples",
                "20",
                "--num-eval",
                "50",
            ]
        )
        == 0
    )
    assert "exact mean log p(x)" in capsys.readouterr().out
    idata = az.from_netcdf(str(tmp_path / "diag" / "posterior.nc"))
    assert idata.posterior["z"].shape[:2] == (1, 20)


def test_users_own_story_by_module_attribute(tmp_path, monkeypatch, capsys):
    """--model module:attribute runs a user's model/guide pair; enumeration's refusal and the
    importance estimates appear in the table."""
    import numpy as np

    (tmp_path / "mystory.py").write_text(
        "import pyro, pyro.distributions as dist, torch\n"
        "def model(x, mask=None):\n"
        "    with pyro.plate('data', x.shape[0]):\n"
        "        z = pyro.sample('z', dist.Normal(torch.zeros(()), 1.0))\n"
        "        pyro.sample('x', dist.Normal(z.unsqueeze(-1), 1.0).to_event(1), obs=x)\n"
        "def guide(x, mask=None):\n"
        "    with pyro.plate('data', x.shape[0]):\n"
        "        pyro.sample('z', dist.Normal(x[:, 0] / 2, 0.5 ** 0.5))\n"
        "pair = (model, guide)\n"
    )
    np.save(tmp_path / "data.npy", np.random.default_rng(0).normal(size=(30, 1)) * 2**0.5)
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "compare",
            "--model",
            "mystory:pair",
            "--data",
            "data.npy",
            "--engine",
            "enumeration,is-prior,is-guide",
            "--load",
            "",
            "--out",
            "cmp",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "IS guide" in text and "refused" in text.lower()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "--model", "nope", "--data", "digits"], "not a built-in"),
        (["fit", "--model", "gmm", "--data", "missing.npy"], "neither a built-in"),
        (["compare", "--model", "gmm", "--data", "digits", "--engine", "magic"], "unknown"),
        (["fit", "--model", "nomodule:thing", "--data", "digits"], "cannot import"),
    ],
)
def test_bad_arguments_get_one_line(argv, message, capsys, tmp_path, monkeypatch):
    """Bad models, data and engines exit 2 with one line naming the problem."""
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--limit", "50"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("model", "method", "expect"),
    [
        ("vae", "refine", "refined importance resampling"),
        ("vae", "hmc", "MCMC acceptance"),
        ("ar", "auto", "(exact)"),
    ],
)
def test_complete_with_test_time_inference_and_the_autoregressive_model(
    tmp_path, capsys, model, method, expect
):
    """``ppl-lvm complete --method`` runs a deep model's test-time inference and reports its
    diagnostics; ``--model ar`` completes the missing top halves exactly (bottom-first)."""
    args = ["complete", "--model", model, "--data", "digits", "--binarize", "--limit", "60"]
    args += ["--epochs", "1", "--latent", "2", "--samples", "2", "--method", method]
    args += ["--particles", "20", "--out", str(tmp_path / "done")]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert expect in text and "RMSE" in text
    if method == "refine":
        assert "log p(x_observed)" in text and "k-hat > 0.7" in text

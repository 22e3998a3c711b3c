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

"""Checkpoints: nothing in a file is ever run, a resumed run equals the uninterrupted one bit for
bit after Ctrl-C or a kill at any step, and a checkpoint of another run is refused by name."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ppl_lvm import models
from ppl_lvm.inference import SVI

ROOT = Path(__file__).resolve().parent.parent


def _data(n: int = 40) -> torch.Tensor:
    return torch.randn(n, 6, generator=torch.Generator().manual_seed(0)).double()


def _vae() -> models.VAE:
    torch.manual_seed(0)
    return models.VAE(6, 2, (8,), "gaussian").double()


def _engine(**kw) -> SVI:
    settings = {"objective": "elbo", "num_particles": 2, "lr": 1e-2, "batch_size": 16}
    settings.update(kw)
    return SVI(**settings)


@pytest.fixture
def checkpoint(tmp_path):
    """A real checkpoint of 5 steps of a small VAE."""
    path = tmp_path / "run.pt"
    _engine().fit(_vae(), _data(), steps=5, seed=3, progress=False, checkpoint=path)
    return path


class _Payload:
    """Unpickling this object would create a file: the proof that code ran."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save zip"])
def test_a_crafted_checkpoint_runs_nothing(tmp_path, kind):
    """A checkpoint that would run code when unpickled is refused, and the code never runs."""
    target = tmp_path / "pwned"
    bad = tmp_path / "bad.pt"
    if kind == "raw pickle":
        bad.write_bytes(pickle.dumps({"model": _Payload(target)}))
    else:
        torch.save({"model": _Payload(target)}, bad)
    with pytest.raises(ValueError, match="not a readable ppl-lvm checkpoint") as info:
        _engine().fit(_vae(), _data(), steps=5, progress=False, resume=bad)
    assert not target.exists()
    assert "bad.pt" in str(info.value) and "refused without being run" in str(info.value)


def test_truncated_garbage_and_foreign_files_are_named(tmp_path, checkpoint):
    """A truncated file, garbage and a plain dict each get an error that names the file."""
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[:200])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(500))
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    for path, phrase in (
        (truncated, "not a readable ppl-lvm checkpoint"),
        (garbage, "not a readable ppl-lvm checkpoint"),
        (foreign, "carries no ppl-lvm metadata"),
    ):
        with pytest.raises(ValueError, match=phrase) as info:
            _engine().fit(_vae(), _data(), steps=6, seed=3, progress=False, resume=path)
        assert path.name in str(info.value)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        _engine().fit(_vae(), _data(), steps=6, progress=False, resume=tmp_path / "none.pt")


@pytest.mark.parametrize(
    ("field", "engine", "data", "seed"),
    [
        ("num_data", {}, 80, 3),
        ("data", {}, -40, 3),
        ("batch_size", {"batch_size": 8}, 40, 3),
        ("objective", {"objective": "iwae"}, 40, 3),
        ("optimizer", {"optimizer": "sgd"}, 40, 3),
        ("seed", {}, 40, 4),
    ],
)
def test_a_checkpoint_of_another_run_is_refused_by_field(checkpoint, field, engine, data, seed):
    """Resuming with other data, batch size, objective, optimizer or seed names the field."""
    x = _data(abs(data)) if data > 0 else _data(40) + 1.0
    with pytest.raises(ValueError, match=rf"belongs to another run: its {field} is"):
        _engine(**engine).fit(_vae(), x, steps=8, seed=seed, progress=False, resume=checkpoint)


def test_another_models_checkpoint_is_refused(checkpoint):
    """A checkpoint of a VAE with other layer sizes names the differing parameters."""
    torch.manual_seed(0)
    wider = models.VAE(6, 2, (16,), "gaussian").double()
    with pytest.raises(ValueError, match="its parameters is"):
        _engine().fit(wider, _data(), steps=8, seed=3, progress=False, resume=checkpoint)


def test_an_unwritable_checkpoint_fails_before_training(tmp_path):
    """A directory, or a path under a file, is refused before any step; no stray .tmp is left."""
    folder = tmp_path / "folder"
    folder.mkdir()
    vae = _vae()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    with pytest.raises(ValueError, match="is a directory"):
        _engine().fit(vae, _data(), steps=5, progress=False, checkpoint=folder)
    assert list(tmp_path.glob("**/*.tmp")) == []
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="cannot be written"):
        _engine().fit(vae, _data(), steps=5, progress=False, checkpoint=blocker / "run.pt")
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items())


_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import torch
    torch.set_num_threads(1)
    from ppl_lvm import models
    from ppl_lvm.inference import SVI

    mode, ckpt, out = sys.argv[1], sys.argv[2], sys.argv[3]

    class Announcing(torch.optim.Adam):
        # prints after each update and pauses, so that the parent can signal at a chosen step
        def step(self, closure=None):
            value = super().step(closure)
            print("step", flush=True)
            time.sleep(0.03)
            return value

    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(0)).double()
    torch.manual_seed(0)
    vae = models.VAE(6, 2, (8,), "gaussian").double()
    engine = SVI(objective="elbo", num_particles=2, lr=1e-2, batch_size=16, optimizer=Announcing)
    kw = dict(steps=40, seed=3, progress=False, checkpoint=ckpt, checkpoint_every=1)
    if mode == "resume":
        kw["resume"] = ckpt
    try:
        engine.fit(vae, x, **kw)
    except KeyboardInterrupt:
        sys.exit(130)
    torch.save(vae.state_dict(), out)
    """
)


def _run(script: Path, mode: str, ckpt: Path, out: Path, stop_at=None, sig=None) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(script), mode, str(ckpt), str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    if stop_at is not None:
        for _ in range(stop_at):
            assert proc.stdout.readline() == "step\n", proc.stderr.read()
        proc.send_signal(sig)
    proc.communicate(timeout=120)
    return proc.returncode


def test_resume_after_sigint_or_sigkill_equals_the_uninterrupted_run(tmp_path):
    """Ctrl-C or a kill at steps 7, 13 and 26, then resume: parameters equal bit for bit."""
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    assert _run(script, "fresh", tmp_path / "full.pt", tmp_path / "full_out.pt") == 0
    full = torch.load(tmp_path / "full_out.pt", weights_only=True)
    for sig, at in ((signal.SIGINT, 7), (signal.SIGKILL, 13), (signal.SIGINT, 26)):
        ckpt, out = tmp_path / f"run{at}.pt", tmp_path / f"out{at}.pt"
        code = _run(script, "fresh", ckpt, out, stop_at=at, sig=sig)
        assert code == (130 if sig == signal.SIGINT else -signal.SIGKILL)
        assert not out.exists() and ckpt.exists()
        assert _run(script, "resume", ckpt, out) == 0
        resumed = torch.load(out, weights_only=True)
        for name, value in full.items():
            assert torch.equal(value, resumed[name]), (sig, at, name)

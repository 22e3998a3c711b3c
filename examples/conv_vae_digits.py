"""Train a small convolutional VAE on binarised 8×8 digits by stochastic variational inference.

``ConvVAE`` is a deep latent-variable model whose encoder and decoder are convolutional
networks: each 8×8 digit has a hidden code z ~ N(0, I_8), the decoder turns z into Bernoulli
probabilities for the 64 pixels through a transposed convolution, and the encoder proposes
q(z | x) through two convolutions. Both are trained together on the mean-field ELBO. On
held-out digits the script reports the ELBO and an importance-sampling estimate of log p(x)
with the encoder as proposal (with its standard error and Pareto k̂), and compares them with
independent Bernoulli pixels at the training means, so the gain from the latent code shows in
nats. The model is a subclass of ``models.AmortizedGaussianLVM`` that gives an encoder and a
decoder and nothing else.

Figure: test digits above their reconstructions, and digits drawn from the model.

Run ``python examples/conv_vae_digits.py [--quick] [--out DIR] [--seed N]``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ppl_lvm import datasets, plots
from ppl_lvm.cli import example_arguments
from ppl_lvm.inference import SVI, ImportanceSampling
from ppl_lvm.models import ConvVAE


def independent_pixels_log_lik(train: torch.Tensor, test: torch.Tensor) -> float:
    """Mean log-likelihood of ``test`` under independent Bernoulli pixels at the training means,
    clamped to [1e-3, 1 - 1e-3]."""
    p = train.mean(0).clamp(1e-3, 1 - 1e-3)
    return float((test * p.log() + (1 - test) * (-p).log1p()).sum(-1).mean())


def main(argv: list[str] | None = None) -> dict:
    """Train the convolutional VAE, report the held-out bounds and draw the figure.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments; None reads ``sys.argv``.

    Returns
    -------
    dict
        ``test_elbo`` and ``test_log_lik`` (the importance estimate) in nats per test digit,
        ``test_log_lik_stderr`` (its standard error, per digit), ``khat_median``,
        ``num_particles``, ``pixels_log_lik`` (independent pixels), ``train_elbo_first`` and
        ``train_elbo_last`` (mean minibatch ELBO over the first and last tenth of training),
        ``num_train``, ``num_test``, ``epochs``, ``seconds`` and ``figures`` (paths).
    """
    args = example_arguments(__doc__, argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    torch.manual_seed(args.seed)  # the networks' initial weights
    ds = datasets.load("digits").binarize(0.5)
    train, test = ds.split(test_size=300, seed=args.seed)
    if args.quick:
        train, test = train.subset(slice(0, 600)), test.subset(slice(0, 100))
    epochs = 20 if args.quick else 60
    num_particles = 100 if args.quick else 1000
    x, x_test = train.x, test.x

    vae = ConvVAE(image_shape=ds.image_shape, latent_dim=8, channels=16, likelihood="bernoulli")
    svi = SVI(objective="meanfield", lr=3e-3, batch_size=50)
    fit = svi.fit(vae, x, epochs=epochs, seed=args.seed, progress=False)
    test_elbo = svi.log_evidence(vae, x_test, seed=args.seed).mean
    estimate = ImportanceSampling("guide", num_particles=num_particles).log_evidence(
        vae, x_test, seed=args.seed
    )
    pixels = independent_pixels_log_lik(x, x_test)
    tenth = max(1, len(fit.history) // 10)

    n_show = 10
    recon = vae.reconstruct(x_test[:n_show])
    drawn = vae.sample(n_show, seed=args.seed, mean=True).x
    figure = plots.image_grid(
        torch.cat([x_test[:n_show], recon, drawn]),
        ds.image_shape,
        out / "conv_vae_digits.png",
        ncols=n_show,
        suptitle="test digits, their reconstructions, and draws z ~ N(0, I) (pixel probabilities)",
    )
    seconds = time.perf_counter() - t0

    print(
        f"digits (binarised): {len(x)} training / {len(x_test)} test images; ConvVAE with "
        f"{vae.latent_dim} latents, {epochs} epochs of mean-field SVI ({fit.num_steps} steps, "
        f"{fit.seconds:.1f} s)"
    )
    print(f"  test ELBO                    {test_elbo:8.2f} nats/digit")
    print(
        f"  importance estimate, K={num_particles:<5d}{estimate.mean:8.2f} ± "
        f"{estimate.total_stderr / len(x_test):.2f} nats/digit (median k̂ "
        f"{float(estimate.khat.median()):.2f})"
    )
    print(f"  independent pixels           {pixels:8.2f} nats/digit")
    print(f"  {seconds:.1f} s; figure {figure}")
    return {
        "test_elbo": test_elbo,
        "test_log_lik": estimate.mean,
        "test_log_lik_stderr": estimate.total_stderr / len(x_test),
        "khat_median": float(estimate.khat.median()),
        "num_particles": num_particles,
        "pixels_log_lik": pixels,
        "train_elbo_first": float(fit.history[:tenth].mean()),
        "train_elbo_last": float(fit.history[-tenth:].mean()),
        "num_train": len(x),
        "num_test": len(x_test),
        "epochs": epochs,
        "seconds": seconds,
        "figures": [figure],
    }


if __name__ == "__main__":
    main()

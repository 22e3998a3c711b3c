"""Train a variational autoencoder on binarised MNIST digits by stochastic variational inference.

A VAE is a latent-variable model with a neural decoder: each image has a hidden code
z ~ N(0, I_20), and its pixels are Bernoulli draws whose probabilities the decoder computes from
z. The posterior p(z | x) is intractable, so an encoder network proposes q(z | x) and both are
trained together by maximising the evidence lower bound (ELBO) on minibatches. On held-out
digits the script reports the ELBO and the tighter importance-weighted (IWAE) bound on
log p(x), and compares them with independent Bernoulli pixels at the training means (the
decoder's starting point), so the gain from the latent code is visible in nats.

Figures: test digits above their reconstructions, digits sampled from the prior through the
decoder, and a 2-D latent space. For the latter a second VAE with latent_dim=2 is trained on
the same data, and the encoder means of the test digits are drawn coloured by their label
(which the model never sees): a genuine 2-D latent space, rather than a projection of the
20-D one.

Run ``python examples/vae_mnist.py [--quick] [--out DIR] [--seed N]``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ppl_lvm import datasets, plots
from ppl_lvm.cli import example_arguments
from ppl_lvm.inference import SVI
from ppl_lvm.models import VAE


def independent_pixels_log_lik(train: torch.Tensor, test: torch.Tensor) -> float:
    """Mean log-likelihood of ``test`` under independent Bernoulli pixels at the training means.

    The probabilities are clamped to [1e-3, 1 - 1e-3], as the VAE's output bias is at the start.
    """
    p = train.mean(0).clamp(1e-3, 1 - 1e-3)
    return float((test * p.log() + (1 - test) * (-p).log1p()).sum(-1).mean())


def main(argv: list[str] | None = None) -> dict:
    """Train the VAEs, report the test bounds and draw the figures.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments; None reads ``sys.argv``.

    Returns
    -------
    dict
        ``test_elbo`` and ``test_iwae`` (mean per test digit, nats), ``num_particles`` (K of
        the IWAE bound), ``pixels_log_lik`` (independent Bernoulli pixels),
        ``latent2_test_elbo`` (the 2-D VAE), ``train_elbo_first`` and ``train_elbo_last`` (mean
        minibatch ELBO over the first and last tenth of training), ``num_train``,
        ``num_test``, ``epochs``, ``seconds`` and ``figures`` (paths).
    """
    args = example_arguments(__doc__, argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    torch.manual_seed(args.seed)  # the networks' initial weights
    ds = datasets.load("mnist5k", binarize=True)
    train, test = ds.split(test_size=1000, seed=args.seed)
    if args.quick:
        # a smoke run: enough steps (60) to move clearly away from the starting point
        train, test = train.subset(slice(0, 2000)), test.subset(slice(0, 500))
    epochs = 3 if args.quick else 10
    num_particles = 50 if args.quick else 500
    x, x_test = train.x, test.x

    vae = VAE(ds.dim, latent_dim=20, hidden=(400,), likelihood="bernoulli")
    # the mean-field objective takes the KL(q ‖ prior) term in closed form: less gradient noise
    svi = SVI(objective="meanfield", lr=1e-3, batch_size=100)
    fit = svi.fit(vae, x, epochs=epochs, seed=args.seed, progress=False)
    test_elbo = svi.log_evidence(vae, x_test, seed=args.seed).mean
    test_iwae = (
        SVI(objective="iwae").log_evidence(vae, x_test, num_particles=num_particles, seed=args.seed)
    ).mean
    pixels = independent_pixels_log_lik(x, x_test)
    tenth = max(1, len(fit.history) // 10)

    vae2 = VAE(ds.dim, latent_dim=2, hidden=(400,), likelihood="bernoulli")
    svi.fit(vae2, x, epochs=epochs, seed=args.seed, progress=False)
    latent2_elbo = svi.log_evidence(vae2, x_test, seed=args.seed).mean

    n_show = 10
    with torch.no_grad():
        recon = vae.reconstruct(x_test[:n_show])
        g = torch.Generator().manual_seed(args.seed)
        z = torch.randn(30, vae.latent_dim, generator=g)
        samples = torch.sigmoid(vae.decode(z))
        loc2, _ = vae2.encode(x_test)
    figures = [
        plots.image_grid(
            torch.cat([x_test[:n_show], recon]),
            ds.image_shape,
            out / "vae_reconstructions.png",
            ncols=n_show,
            suptitle="test digits (top) and their reconstructions E[x | z = mean of q(z | x)]",
        ),
        plots.image_grid(
            samples,
            ds.image_shape,
            out / "vae_samples.png",
            ncols=10,
            suptitle="samples: z ~ N(0, I), pixel probabilities from the decoder",
        ),
        plots.scatter2d(
            loc2,
            out / "vae_latent_space.png",
            labels=test.labels,
            title="2-D VAE: encoder means of the test digits, by digit",
            axis_labels=("$z_1$", "$z_2$"),
        ),
    ]
    seconds = time.perf_counter() - t0

    print(
        f"mnist5k (binarised): {len(x)} training / {len(x_test)} test digits; VAE 784-400-20, "
        f"{epochs} epochs of mean-field SVI ({fit.num_steps} steps, {fit.seconds:.1f} s)"
    )
    print(f"  test ELBO            {test_elbo:8.2f} nats/digit")
    print(f"  test IWAE-{num_particles:<4d} bound {test_iwae:8.2f} nats/digit")
    print(f"  independent pixels   {pixels:8.2f} nats/digit")
    print(f"  2-D latent VAE: test ELBO {latent2_elbo:.2f} nats/digit")
    print(f"  {seconds:.1f} s; figures in {out}")
    return {
        "test_elbo": test_elbo,
        "test_iwae": test_iwae,
        "num_particles": num_particles,
        "pixels_log_lik": pixels,
        "latent2_test_elbo": latent2_elbo,
        "train_elbo_first": float(fit.history[:tenth].mean()),
        "train_elbo_last": float(fit.history[-tenth:].mean()),
        "num_train": len(x),
        "num_test": len(x_test),
        "epochs": epochs,
        "seconds": seconds,
        "figures": figures,
    }


if __name__ == "__main__":
    main()

"""The VAE of Pyro's ``examples/vae/vae.py``, shrunk to 12 binary pixels and a 2-D latent.

Source: pyro-ppl/pyro, ``examples/vae/vae.py``: ``Encoder``, ``Decoder`` and ``VAE.model`` /
``VAE.guide`` as written there (softplus hidden layer, sigmoid Bernoulli decoder,
``pyro.module`` registrations, ``validate_args=False`` on the likelihood).

Exact: the latent is 2-D, so log p(x_n) = log ∫ N(z; 0, I) Π_d Bernoulli(x_nd; decoder(z)_d) dz
is a converged quadrature on a 321 × 321 grid over [-8, 8]² (a 481-point grid agrees to 1e-9).

What the contract made us change:
- images have 12 pixels (a 3 × 4 picture, flattened) instead of 784: ``784`` becomes
  ``PIXELS``; z_dim = 2 and hidden_dim = 8 instead of 50 and 400;
- ``model(x)`` and ``guide(x)`` take ``mask=None``;
- the networks are initialised under a fixed seed, and the data are eight images drawn from
  this decoder (binary, shape (N, 12)).
"""

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn

from . import _exact

PIXELS = 12


class Encoder(nn.Module):
    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        # setup the three linear transformations used
        self.fc1 = nn.Linear(PIXELS, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, z_dim)
        self.fc22 = nn.Linear(hidden_dim, z_dim)
        # setup the non-linearities
        self.softplus = nn.Softplus()

    def forward(self, x):
        # first shape the mini-batch to have pixels in the rightmost dimension
        x = x.reshape(-1, PIXELS)
        # then compute the hidden units
        hidden = self.softplus(self.fc1(x))
        # then return a mean vector and a (positive) square root covariance
        z_loc = self.fc21(hidden)
        z_scale = torch.exp(self.fc22(hidden))
        return z_loc, z_scale


class Decoder(nn.Module):
    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        # setup the two linear transformations used
        self.fc1 = nn.Linear(z_dim, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, PIXELS)
        # setup the non-linearities
        self.softplus = nn.Softplus()

    def forward(self, z):
        # define the forward computation on the latent z
        hidden = self.softplus(self.fc1(z))
        # return the parameter for the output Bernoulli
        loc_img = torch.sigmoid(self.fc21(hidden))
        return loc_img


class VAE(nn.Module):
    def __init__(self, z_dim=2, hidden_dim=8):
        super().__init__()
        # create the encoder and decoder networks
        self.encoder = Encoder(z_dim, hidden_dim)
        self.decoder = Decoder(z_dim, hidden_dim)
        self.z_dim = z_dim

    # define the model p(x|z)p(z)
    def model(self, x, mask=None):
        # register PyTorch module `decoder` with Pyro
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            # setup hyperparameters for prior p(z)
            z_loc = torch.zeros(x.shape[0], self.z_dim, dtype=x.dtype, device=x.device)
            z_scale = torch.ones(x.shape[0], self.z_dim, dtype=x.dtype, device=x.device)
            # sample from prior (value will be sampled by guide when computing the ELBO)
            z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            # decode the latent code z
            loc_img = self.decoder.forward(z)
            # score against actual images (with relaxed Bernoulli values)
            pyro.sample(
                "obs",
                dist.Bernoulli(loc_img, validate_args=False).to_event(1),
                obs=x.reshape(-1, PIXELS),
            )
            # return the loc so we can visualize it later
            return loc_img

    # define the guide (i.e. variational distribution) q(z|x)
    def guide(self, x, mask=None):
        # register PyTorch module `encoder` with Pyro
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            # use the encoder to get the parameters used to define q(z|x)
            z_loc, z_scale = self.encoder.forward(x)
            # sample the latent code z
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))


with torch.random.fork_rng():
    torch.manual_seed(0)
    vae = VAE(z_dim=2, hidden_dim=8)

model = vae.model
guide = vae.guide


def data():
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        z = torch.randn(8, 2, generator=g).to(torch.get_default_dtype())
        probs = vae.decoder(z.to(next(vae.parameters()).dtype))
        return torch.bernoulli(probs, generator=g).to(torch.get_default_dtype())


def exact_log_evidence(x, num=321):
    x = _exact.t64(x)
    decoder = Decoder(2, 8).to(_exact.F64)
    decoder.load_state_dict({k: v.to(_exact.F64) for k, v in vae.decoder.state_dict().items()})

    def log_lik(zz):
        with torch.no_grad():
            probs = decoder(zz)  # (G, PIXELS)
        return dist.Bernoulli(probs[:, None, :]).log_prob(x[None]).sum(-1)  # (G, N)

    return float(_exact.log_integral_2d_standard_normal(log_lik, num=num).sum())


ENGINES = {
    "enumeration": "refuse",  # a continuous local latent
    "is-prior": "estimate",
    # the untrained encoder is a heavy-tailed proposal for some images (z = -4.7 in 8 seeds)
    "is-guide": "bound",
    "svi-elbo": "bound",
    "svi-iwae": "bound",
    "ais": "estimate",
}

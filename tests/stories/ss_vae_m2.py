"""The semi-supervised VAE (M2) of Pyro's ``examples/vae/ss_vae_M2.py``, with some labels seen.

Source: pyro-ppl/pyro, ``examples/vae/ss_vae_M2.py``: ``SSVAE.model`` and ``SSVAE.guide``, and
``examples/vae/utils/custom_mlp.py``: ``MLP``, ``ConcatModule``, ``Exp`` (hidden layers
initialised N(0, 0.001) as there). The example's default ``--enum-discrete parallel`` sets
``allow_broadcast`` and wraps the guide in ``config_enumerate(ss_vae.guide, "parallel",
expand=True)``, which is the guide used here.

The example calls ``model(xs, ys)`` on labelled batches and ``model(xs)`` on unlabelled ones. A
batch with both is the same story with Pyro's ``obs_mask``: the model observes ``y`` where the
label is seen and imputes ``y_unobserved`` elsewhere, which the guide draws from
``encoder_y`` (masked to the unseen rows), exactly as its ``ys is None`` branch does.

Exact: z is 2-D, so for each image log p(x_n, y_n) = log(1/C) + log ∫ N(z; 0, I) p(x_n | z, y_n)
dz by a converged quadrature (321 × 321 grid over [-8, 8]²); an unlabelled image sums y out.

What the contract made us change:
- the data are one dict ``x = {"xs": images (N, 10), "ys": one-hot labels (N, 3)}`` with
  ``mask = {"ys": (N, 3) bool}``, False on the rows whose label is unseen (those rows hold NaN,
  which a story never reads);
- ``model(xs, ys=None)`` and ``guide(xs, ys=None)`` gain ``obs_mask=None``: the model passes it
  to ``pyro.sample("y", ..., obs=ys, obs_mask=obs_mask)``; the guide's unsupervised branch draws
  ``y_unobserved`` (masked by ``~obs_mask``) when some labels are seen, and ``y`` when none is;
- module-level ``model(x, mask=None)`` and ``guide(x, mask=None)`` unpack the dict;
- sizes: 10 pixels, 3 classes, z_dim = 2, one hidden layer of 8 (the example: 784, 10, 50,
  (500,)); the networks are initialised under a fixed seed; ``use_cuda`` and
  ``aux_loss_multiplier`` (training-only) are dropped.
"""

from inspect import isclass

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn
from pyro.distributions.util import broadcast_shape
from pyro.infer import config_enumerate

from . import _exact

PIXELS, CLASSES, Z_DIM, HIDDEN = 10, 3, 2, (8,)


class Exp(nn.Module):
    """a custom module for exponentiation of tensors"""

    def forward(self, val):
        return torch.exp(val)


class ConcatModule(nn.Module):
    """a custom module for concatenation of tensors"""

    def __init__(self, allow_broadcast=False):
        self.allow_broadcast = allow_broadcast
        super().__init__()

    def forward(self, *input_args):
        if len(input_args) == 1:
            input_args = input_args[0]
        if torch.is_tensor(input_args):
            return input_args
        if self.allow_broadcast:
            shape = broadcast_shape(*[s.shape[:-1] for s in input_args]) + (-1,)
            input_args = [s.expand(shape) for s in input_args]
        return torch.cat(input_args, dim=-1)


class ListOutModule(nn.ModuleList):
    """a custom module for outputting a list of tensors from a list of nn modules"""

    def forward(self, *args, **kwargs):
        return [mm.forward(*args, **kwargs) for mm in self]


def call_nn_op(op):
    if op in [nn.Softmax, nn.LogSoftmax]:
        return op(dim=1)
    return op()


class MLP(nn.Module):
    def __init__(self, mlp_sizes, activation=nn.ReLU, output_activation=None,
                 allow_broadcast=False):  # fmt: skip
        super().__init__()
        input_size, hidden_sizes, output_size = mlp_sizes[0], mlp_sizes[1:-1], mlp_sizes[-1]
        last_layer_size = input_size if type(input_size) is int else sum(input_size)
        all_modules = [ConcatModule(allow_broadcast)]
        for layer_size in hidden_sizes:
            cur_linear_layer = nn.Linear(last_layer_size, layer_size)
            cur_linear_layer.weight.data.normal_(0, 0.001)
            cur_linear_layer.bias.data.normal_(0, 0.001)
            all_modules.append(cur_linear_layer)
            all_modules.append(activation())
            last_layer_size = layer_size
        if type(output_size) is int:
            all_modules.append(nn.Linear(last_layer_size, output_size))
            if output_activation is not None:
                all_modules.append(
                    call_nn_op(output_activation)
                    if isclass(output_activation)
                    else output_activation
                )
        else:
            out_layers = []
            for out_ix, out_size in enumerate(output_size):
                split_layer = [nn.Linear(last_layer_size, out_size)]
                act_out_fct = (
                    output_activation
                    if not isinstance(output_activation, (list, tuple))
                    else output_activation[out_ix]
                )
                if act_out_fct:
                    split_layer.append(
                        call_nn_op(act_out_fct) if isclass(act_out_fct) else act_out_fct
                    )
                out_layers.append(nn.Sequential(*split_layer))
            all_modules.append(ListOutModule(out_layers))
        self.sequential_mlp = nn.Sequential(*all_modules)

    def forward(self, *args, **kwargs):
        return self.sequential_mlp.forward(*args, **kwargs)


class SSVAE(nn.Module):
    def __init__(self, output_size=10, input_size=784, z_dim=50, hidden_layers=(500,),
                 config_enum=None):  # fmt: skip
        super().__init__()
        self.output_size = output_size
        self.input_size = input_size
        self.z_dim = z_dim
        self.hidden_layers = hidden_layers
        self.allow_broadcast = config_enum == "parallel"
        self.setup_networks()

    def setup_networks(self):
        z_dim = self.z_dim
        hidden_sizes = list(self.hidden_layers)
        self.encoder_y = MLP(
            [self.input_size, *hidden_sizes, self.output_size],
            activation=nn.Softplus,
            output_activation=nn.Softmax,
            allow_broadcast=self.allow_broadcast,
        )
        self.encoder_z = MLP(
            [self.input_size + self.output_size, *hidden_sizes, [z_dim, z_dim]],
            activation=nn.Softplus,
            output_activation=[None, Exp],
            allow_broadcast=self.allow_broadcast,
        )
        self.decoder = MLP(
            [z_dim + self.output_size, *hidden_sizes, self.input_size],
            activation=nn.Softplus,
            output_activation=nn.Sigmoid,
            allow_broadcast=self.allow_broadcast,
        )

    def model(self, xs, ys=None, obs_mask=None):
        # register this pytorch module and all of its sub-modules with pyro
        pyro.module("ss_vae", self)
        batch_size = xs.size(0)
        options = dict(dtype=xs.dtype, device=xs.device)
        with pyro.plate("data"):
            # sample the handwriting style from the constant prior distribution
            prior_loc = torch.zeros(batch_size, self.z_dim, **options)
            prior_scale = torch.ones(batch_size, self.z_dim, **options)
            zs = pyro.sample("z", dist.Normal(prior_loc, prior_scale).to_event(1))
            # if the label y (which digit to write) is supervised, sample from the
            # constant prior, otherwise, observe the value (i.e. score it against the prior)
            alpha_prior = torch.ones(batch_size, self.output_size, **options) / (
                1.0 * self.output_size
            )
            ys = pyro.sample("y", dist.OneHotCategorical(alpha_prior), obs=ys, obs_mask=obs_mask)
            # Finally, score the image (x) using the handwriting style (z) and
            # the class label y (which digit to write) against the
            # parametrized distribution p(x|y,z) = bernoulli(decoder(y,z))
            loc = self.decoder([zs, ys])
            pyro.sample("x", dist.Bernoulli(loc, validate_args=False).to_event(1), obs=xs)
            # return the loc so we can visualize it later
            return loc

    def guide(self, xs, ys=None, obs_mask=None):
        # inform Pyro that the variables in the batch of xs, ys are conditionally independent
        with pyro.plate("data"):
            # if the class label (the digit) is not supervised, sample
            # (and score) the digit with the variational distribution
            # q(y|x) = categorical(alpha(x))
            if ys is None:
                alpha = self.encoder_y(xs)
                ys = pyro.sample("y", dist.OneHotCategorical(alpha))
            elif obs_mask is not None:
                alpha = self.encoder_y(xs)
                ys_unobserved = pyro.sample(
                    "y_unobserved", dist.OneHotCategorical(alpha).mask(~obs_mask)
                )
                ys = torch.where(obs_mask.unsqueeze(-1), ys, ys_unobserved)
            # sample (and score) the latent handwriting-style with the variational
            # distribution q(z|x,y) = normal(loc(x,y),scale(x,y))
            loc, scale = self.encoder_z([xs, ys])
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))


with torch.random.fork_rng():
    torch.manual_seed(0)
    ss_vae = SSVAE(CLASSES, PIXELS, Z_DIM, HIDDEN, config_enum="parallel")

_guide = config_enumerate(ss_vae.guide, "parallel", expand=True)


def _obs_mask(mask):
    if mask is None or "ys" not in mask:
        return None
    return mask["ys"].all(-1)


def model(x, mask=None):
    return ss_vae.model(x["xs"], x["ys"], obs_mask=_obs_mask(mask))


def guide(x, mask=None):
    return _guide(x["xs"], x["ys"], obs_mask=_obs_mask(mask))


def data():
    g = torch.Generator().manual_seed(2)
    dtype = torch.get_default_dtype()
    n = 8
    labels = torch.arange(n) % CLASSES
    ys = torch.nn.functional.one_hot(labels, CLASSES).to(dtype)
    with torch.no_grad():
        z = torch.randn(n, Z_DIM, generator=g).to(dtype)
        probs = ss_vae.decoder([z, ys])
        xs = torch.bernoulli(probs, generator=g)
    seen = torch.tensor([True, True, False, True, False, False, True, False])
    ys[~seen] = float("nan")
    mask = {"ys": seen[:, None].expand(n, CLASSES).clone()}
    return {"xs": xs, "ys": ys}, mask


def exact_log_evidence(x, num=321):
    xs = _exact.t64(x["xs"])
    ys = _exact.t64(x["ys"])
    seen = ~torch.isnan(ys).any(-1)
    decoder = MLP([Z_DIM + CLASSES, *HIDDEN, PIXELS], nn.Softplus, nn.Sigmoid, True).to(_exact.F64)
    decoder.load_state_dict({k: v.to(_exact.F64) for k, v in ss_vae.decoder.state_dict().items()})
    eye = torch.eye(CLASSES, dtype=_exact.F64)
    per_class = []
    for c in range(CLASSES):

        def log_lik(zz, c=c):
            with torch.no_grad():
                probs = decoder([zz, eye[c].expand(len(zz), CLASSES)])  # (G, PIXELS)
            return dist.Bernoulli(probs[:, None, :]).log_prob(xs[None]).sum(-1)  # (G, N)

        per_class.append(_exact.log_integral_2d_standard_normal(log_lik, num=num))
    per_class = torch.stack(per_class, -1) - torch.log(torch.tensor(float(CLASSES)))  # (N, C)
    labels = torch.nan_to_num(ys).argmax(-1)
    labelled = per_class.gather(-1, labels[:, None]).squeeze(-1)
    unlabelled = torch.logsumexp(per_class, -1)
    return float(torch.where(seen, labelled, unlabelled).sum())


ENGINES = {
    "enumeration": "refuse",  # a continuous local latent
    "is-prior": "estimate",
    "is-guide": "bound",  # an untrained encoder: a valid proposal, not a trustworthy SE
    "svi-elbo": "bound",  # TraceEnum_ELBO, y_unobserved enumerated in the guide
    "svi-iwae": "bound",  # y_unobserved drawn from the guide: a valid IWAE bound
    "ais": "refuse",  # HMC moves continuous latents; discrete ones are refused
}

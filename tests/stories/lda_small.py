"""Latent Dirichlet allocation from Pyro's ``examples/lda.py``, small.

Source: pyro-ppl/pyro, ``examples/lda.py``: ``model`` (global topic weights and topic-word
distributions, per-document topic proportions, per-word topics enumerated in parallel),
``make_predictor`` and ``parametrized_guide`` (conjugate-family guides for the globals, an
amortised MLP for the document topics, given as a ``Delta``).

    with pyro.plate("documents", args.num_docs) as ind:
        ...
        doc_topics = pyro.sample("doc_topics", dist.Dirichlet(topic_weights))
        with pyro.plate("words", args.num_words_per_doc):
            word_topics = pyro.sample("word_topics", dist.Categorical(doc_topics),
                                      infer={"enumerate": "parallel"})
            data = pyro.sample("doc_words", dist.Categorical(topic_words[word_topics]),
                               obs=data)

The data plate is "documents" (dim -1), the words plate sits inside it at dim -2, and the data
arrive transposed, (words per document, documents). ``topic_words[word_topics]`` is plain
tutorial indexing that must survive particles and enumeration. Every latent but the words'
topics is continuous and the globals have priors, so there is no exact value; the guide's
``Delta`` over ``doc_topics`` makes SVI's objective a MAP objective for them, not a bound.

What the contract made us change:
- ``x`` is (documents, words per document); ``model`` and the guide read ``data = x.T`` (the
  example's layout) and take the word ids with ``.long()`` (the guide's ``scatter_add`` needs
  integer indices);
- ``args`` is a fixed namespace: 2 topics, 4 words, 5 documents of 6 words, one hidden layer of
  8 (the example: 8, 1024, 1000, 64, "100-100"); ``model(x, mask=None)`` and ``guide(x,
  mask=None)`` wrap the example's ``model(data, args, batch_size)`` and
  ``parametrized_guide(predictor, data, args, batch_size)``;
- the predictor is initialised under a fixed seed; the data are drawn from fixed topics.
"""

from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn
from torch.distributions import constraints

DATA_PLATE = "documents"
ARGS = SimpleNamespace(num_topics=2, num_words=4, num_docs=5, num_words_per_doc=6, layer_sizes="8")


def lda_model(data=None, args=None, batch_size=None):
    # Globals.
    with pyro.plate("topics", args.num_topics):
        topic_weights = pyro.sample("topic_weights", dist.Gamma(1.0 / args.num_topics, 1.0))
        topic_words = pyro.sample(
            "topic_words", dist.Dirichlet(torch.ones(args.num_words) / args.num_words)
        )

    # Locals.
    with pyro.plate("documents", args.num_docs) as ind:
        if data is not None:
            assert data.shape == (args.num_words_per_doc, args.num_docs)
            data = data[:, ind]
        doc_topics = pyro.sample("doc_topics", dist.Dirichlet(topic_weights))
        with pyro.plate("words", args.num_words_per_doc):
            # The word_topics variable is marginalized out during inference,
            # achieved by specifying infer={"enumerate": "parallel"} and using
            # TraceEnum_ELBO for inference. Thus we can ignore this variable in
            # the guide.
            word_topics = pyro.sample(
                "word_topics",
                dist.Categorical(doc_topics),
                infer={"enumerate": "parallel"},
            )
            data = pyro.sample("doc_words", dist.Categorical(topic_words[word_topics]), obs=data)

    return topic_weights, topic_words, data


def make_predictor(args):
    layer_sizes = (
        [args.num_words] + [int(s) for s in args.layer_sizes.split("-")] + [args.num_topics]
    )
    layers = []
    for in_size, out_size in zip(layer_sizes, layer_sizes[1:], strict=False):  # noqa: RUF007
        layer = nn.Linear(in_size, out_size)
        layer.weight.data.normal_(0, 0.001)
        layer.bias.data.normal_(0, 0.001)
        layers.append(layer)
        layers.append(nn.Sigmoid())
    layers.append(nn.Softmax(dim=-1))
    return nn.Sequential(*layers)


def parametrized_guide(predictor, data, args, batch_size=None):
    # Use a conjugate guide for global variables.
    topic_weights_posterior = pyro.param(
        "topic_weights_posterior",
        lambda: torch.ones(args.num_topics),
        constraint=constraints.positive,
    )
    topic_words_posterior = pyro.param(
        "topic_words_posterior",
        lambda: torch.ones(args.num_topics, args.num_words),
        constraint=constraints.greater_than(0.5),
    )
    with pyro.plate("topics", args.num_topics):
        pyro.sample("topic_weights", dist.Gamma(topic_weights_posterior, 1.0))
        pyro.sample("topic_words", dist.Dirichlet(topic_words_posterior))

    # Use an amortized guide for local variables.
    pyro.module("predictor", predictor)
    with pyro.plate("documents", args.num_docs, batch_size) as ind:
        data = data[:, ind]
        # The neural network will operate on histograms rather than word
        # index vectors, so we'll convert the raw data to a histogram.
        counts = torch.zeros(args.num_words, ind.size(0)).scatter_add(
            0, data, torch.ones(data.shape)
        )
        doc_topics = predictor(counts.transpose(0, 1))
        pyro.sample("doc_topics", dist.Delta(doc_topics, event_dim=1))


with torch.random.fork_rng():
    torch.manual_seed(0)
    predictor = make_predictor(ARGS)


def model(x, mask=None):
    return lda_model(x.T.long(), ARGS)


def guide(x, mask=None):
    return parametrized_guide(predictor, x.T.long(), ARGS)


def data():
    g = torch.Generator().manual_seed(0)
    topic_words = torch.tensor([[0.6, 0.3, 0.05, 0.05], [0.05, 0.05, 0.3, 0.6]])
    docs = []
    for _ in range(ARGS.num_docs):
        theta = -torch.rand(2, generator=g).log()  # Dirichlet(1, 1) from two exponentials
        theta = theta / theta.sum()
        z = torch.multinomial(theta, ARGS.num_words_per_doc, replacement=True, generator=g)
        words = torch.stack([torch.multinomial(topic_words[k], 1, generator=g)[0] for k in z])
        docs.append(words)
    return torch.stack(docs).to(torch.get_default_dtype())  # (documents, words per document)


def exact_log_evidence(x):
    return None  # continuous global and local latents with priors: no exact value


ENGINES = {
    "enumeration": "refuse",  # continuous latents
    "is-prior": "runs",
    "is-guide": "refuse",  # the document topics are a point mass (Delta) in the guide
    "svi-elbo": "refuse",  # a Delta over a continuous latent: a MAP objective, not a bound
    "svi-iwae": "refuse",
    "ais": "refuse",  # HMC moves continuous latents; discrete ones are refused
}

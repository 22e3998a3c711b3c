"""``test_elbo_enumerate_plate_3``, the scaled parametrisation.

``poutine.scale(10)`` wraps model and guide, so the exact answer Pyro's ``TraceEnum_ELBO``
gives is 10 × log p(x).

Source: pyro-ppl/pyro, ``tests/infer/test_enum.py``, ``test_elbo_enumerate_plate_3`` with
num_samples = 3, num_masked = 3, scale = 10; the author's code and every change the
contract made are in :mod:`._enum_plate_3`.

Exact: the test's ``hand_model`` sums x and y per datum; see :func:`._enum_plate_3.exact`.
"""

from . import _enum_plate_3

NUM_SAMPLES, NUM_MASKED, SCALE = 3, 3, 10

model, guide = _enum_plate_3.make(NUM_SAMPLES, NUM_MASKED, SCALE)
data = _enum_plate_3.data


def exact_log_evidence(x):
    return _enum_plate_3.exact(x, NUM_MASKED, SCALE)


ENGINES = {
    "enumeration": "exact",  # scale × log p(x), as TraceEnum_ELBO sums it
    # an importance estimate of a scaled density has no exact target to compare with
    "is-prior": "runs",
    "is-guide": "runs",
    "svi-elbo": "bound",  # scale × ELBO <= scale × log p(x)
    "svi-iwae": "refuse",  # under poutine.scale the log-mean-exp of scaled weights bounds nothing
    "ais": "refuse",  # HMC moves continuous latents; discrete ones are refused
}

"""``test_elbo_enumerate_plate_3``, the plain parametrisation (scale 1, no mask).

Source: pyro-ppl/pyro, ``tests/infer/test_enum.py``, ``test_elbo_enumerate_plate_3`` with
num_samples = 3, num_masked = 3, scale = 1; the author's code and every change the
contract made are in :mod:`._enum_plate_3`.

Exact: the test's ``hand_model`` sums x and y per datum; see :func:`._enum_plate_3.exact`.
"""

from . import _enum_plate_3

NUM_SAMPLES, NUM_MASKED, SCALE = 3, 3, 1

model, guide = _enum_plate_3.make(NUM_SAMPLES, NUM_MASKED, SCALE)
data = _enum_plate_3.data


def exact_log_evidence(x):
    return _enum_plate_3.exact(x, NUM_MASKED, SCALE)


ENGINES = {
    "enumeration": "exact",
    "is-prior": "estimate",
    "is-guide": "estimate",  # x drawn from the guide, y summed in the model
    "svi-elbo": "bound",  # TraceEnum_ELBO, x enumerated in the guide
    "svi-iwae": "bound",  # y summed inside each weight: the IWAE bound of the marginal story
    "ais": "refuse",  # HMC moves continuous latents; discrete ones are refused
}

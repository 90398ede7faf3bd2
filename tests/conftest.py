import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(1234)
    yield


def numpy_log_softmax(logits, temperature=1.0):
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def numpy_kd(teacher_logits, student_logits, temperature, weights=None, reduction="mean_probabilities"):
    """Reference Hinton loss per example, in float64."""
    teachers = teacher_logits if isinstance(teacher_logits, list) else [teacher_logits]
    weights = np.ones(len(teachers)) if weights is None else np.asarray(weights, float)
    weights = weights / weights.sum()
    log_q = numpy_log_softmax(student_logits, temperature)
    if reduction == "mean_probabilities":
        p = sum(w * np.exp(numpy_log_softmax(t, temperature)) for t, w in zip(teachers, weights))
        kl = (p * (np.log(p) - log_q)).sum(-1)
    else:
        kl = sum(
            w * (np.exp(lp) * (lp - log_q)).sum(-1)
            for lp, w in ((numpy_log_softmax(t, temperature), w) for t, w in zip(teachers, weights))
        )
    return kl * temperature**2

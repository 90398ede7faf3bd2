"""Mixed precision: float32 loss, loss scaling for float16, no inf/NaN."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_kd
from tests.scale_helpers import fashion_subset, tiny_teacher_and_student

# A confident teacher (logits of magnitude 50) at a high temperature: in
# float16, exp(50) overflows (float16 max is 65504) and 50**2 * 20**2 would too.
LOGIT_SCALE, TEMPERATURE = 50.0, 20.0
N, BATCH, EPOCHS = 256, 32, 2


@pytest.fixture
def policy():
    """Sets a global dtype policy for one test, and always restores float32."""
    previous = keras.mixed_precision.global_policy()

    def set_policy(name):
        keras.mixed_precision.set_global_policy(name)

    yield set_policy
    keras.mixed_precision.set_global_policy(previous)


def distil(policy_name, set_policy, optimizer=None):
    set_policy(policy_name)
    x, y = fashion_subset(N)
    teacher, student = tiny_teacher_and_student(logit_scale=LOGIT_SCALE)
    distiller = keras_kd.Distiller(student, teacher)
    distiller.compile(
        optimizer=optimizer or keras.optimizers.Adam(1e-3),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
        alpha=0.1,
        temperature=TEMPERATURE,
    )
    history = distiller.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    teacher_logits = teacher.predict(x[:64], verbose=0)
    student_logits = student.predict(x[:64], verbose=0)
    evaluation = distiller.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    return distiller, student, history.history, teacher_logits, student_logits, evaluation


@pytest.fixture(scope="module")
def float32_run():
    previous = keras.mixed_precision.global_policy()
    try:
        return distil("float32", keras.mixed_precision.set_global_policy)
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("policy_name, low", [
    ("mixed_float16", "float16"),
    ("mixed_bfloat16", "bfloat16"),
])
def test_mixed_precision_distillation(policy, float32_run, policy_name, low):
    distiller, student, history, teacher_logits, student_logits, evaluation = distil(
        policy_name, policy
    )
    # The setting is real: the models compute in the low precision, their
    # variables stay float32, and the teacher's logits reach magnitude 50.
    assert student.dtype_policy.name == policy_name
    assert teacher_logits.dtype == np.dtype(low) or str(teacher_logits.dtype) == low
    assert np.abs(teacher_logits.astype("float32")).max() > 0.9 * LOGIT_SCALE
    assert all(w.dtype == "float32" for w in student.trainable_weights)

    # Loss scaling for float16 only (bfloat16 has float32's exponent range).
    scaled = isinstance(distiller.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy_name == "mixed_float16")

    # The distillation terms compute in float32 from low-precision logits.
    term_values = distiller.terms[1](
        ops.convert_to_tensor(student_logits), [ops.convert_to_tensor(teacher_logits)]
    )
    assert term_values.dtype == "float32"
    assert np.all(np.isfinite(ops.convert_to_numpy(term_values)))

    # No inf/NaN anywhere.
    for name, values in history.items():
        assert np.all(np.isfinite(values)), (name, values)
    assert all(np.all(np.isfinite(w)) for w in student.get_weights())
    assert np.isfinite(evaluation["loss"])

    # ... and it trained: the loss went down.
    assert history["loss"][-1] < history["loss"][0]

    _, _, history32, _, _, evaluation32 = float32_run
    steps = EPOCHS * (N // BATCH)
    if policy_name == "mixed_float16":
        # Dynamic loss scaling starts at 2**15 and halves, skipping the
        # step, while gradients overflow float16: a few steps at the start
        # (3 measured here), then it has settled.
        applied = int(distiller.optimizer.inner_optimizer.iterations)
        assert steps - 5 <= applied < steps
        assert float(distiller.optimizer.dynamic_scale) < 2**15
    else:
        # bfloat16 (8-bit mantissa) follows float32 within 2% per epoch
        # (0.4% measured).
        for name in ("loss", "student_loss", "distillation_loss"):
            np.testing.assert_allclose(history[name], history32[name], rtol=0.02, err_msg=name)
        assert abs(evaluation["acc"] - evaluation32["acc"]) <= 0.03


def test_float16_with_settled_loss_scale_matches_float32(policy, float32_run):
    """With a loss scale that needs no adjusting, float16 skips no step and
    follows float32 within 0.1% per epoch (0.01% measured)."""
    optimizer = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.Adam(1e-3), initial_scale=2**12
    )
    distiller, _, history, _, _, evaluation = distil("mixed_float16", policy, optimizer)
    assert int(distiller.optimizer.inner_optimizer.iterations) == EPOCHS * (N // BATCH)
    _, _, history32, _, _, evaluation32 = float32_run
    for name in ("loss", "student_loss", "distillation_loss"):
        np.testing.assert_allclose(history[name], history32[name], rtol=1e-3, err_msg=name)
    np.testing.assert_allclose(evaluation["loss"], evaluation32["loss"], rtol=1e-3)


def test_float16_kd_loss_of_confident_teacher_is_finite_and_float32(policy):
    """The loss function itself, on float16 logits at the extreme setting."""
    set_policy = policy
    set_policy("mixed_float16")
    rng = np.random.default_rng(0)
    teacher = (LOGIT_SCALE * np.sign(rng.normal(size=(16, 10)))).astype("float16")
    student = (LOGIT_SCALE * rng.uniform(-1, 1, size=(16, 10))).astype("float16")
    value = keras_kd.distillation_kl_divergence(teacher, student, temperature=TEMPERATURE)
    assert value.dtype == "float32"
    value = ops.convert_to_numpy(value)
    assert np.all(np.isfinite(value))
    assert np.all(value > 0)

"""keras_kd.Distiller runs code written for keras.distillation (issue 15)."""

import numpy as np
import pytest

import keras
from keras import ops
from keras_kd.src import keras_compat

if not keras_compat.HAS_KERAS_DISTILLATION:
    pytest.skip(keras_compat.KERAS_DISTILLATION_MISSING, allow_module_level=True)

from keras.distillation import DistillationLoss, FeatureDistillation, LogitsDistillation  # noqa: E402

import keras_kd
from conftest import numpy_kd

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def make_model(width=8, name="model", seed=0, classes=3):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(width, activation="relu", name="h")(inputs)
    outputs = keras.layers.Dense(classes, name="out")(hidden)
    return keras.Model(inputs, outputs, name=name)


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype("float32"), rng.integers(0, 3, n)


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


def changed(before, model):
    return any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def keras_style(teacher=None, student=None, losses=None, **kwargs):
    return keras_kd.Distiller(
        teacher=teacher or make_model(32, "teacher", seed=1),
        student=student or make_model(8, "student", seed=2),
        distillation_losses=losses if losses is not None else LogitsDistillation(temperature=3.0),
        **kwargs,
    )


# ------------------------------------------------------------ keras.io code


def test_keras_distillation_code_runs_unchanged_and_trains_the_student_only():
    teacher, student = make_model(32, "teacher", seed=1), make_model(8, "student", seed=2)
    teacher_before, student_before = weights_of(teacher), weights_of(student)
    distiller = keras_kd.Distiller(
        teacher=teacher,
        student=student,
        distillation_losses=LogitsDistillation(temperature=3.0),
        student_loss_weight=0.5,
    )
    distiller.compile(optimizer="adam", loss=CE, metrics=["accuracy"])
    x, y = data()
    history = distiller.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert sorted(history.history) == ["accuracy", "distillation_loss", "loss", "student_loss"]
    assert distiller.student is student and distiller.teacher is teacher
    assert changed(student_before, student)
    assert not changed(teacher_before, teacher)
    assert distiller.alpha == 0.5
    assert distiller.temperature == 3.0
    assert np.isfinite(history.history["loss"]).all()


def test_default_student_loss_weight_is_keras_default():
    distiller = keras_style()
    distiller.compile(optimizer="adam", loss=CE)
    assert distiller.student_loss_weight == 0.5
    assert [float(t.loss_weight.numpy()) for t in distiller.terms] == [0.5, 0.5]


def test_step_loss_is_keras_weighted_sum_with_keras_kd_kl():
    x, y = data(16)
    distiller = keras_style(
        losses=[LogitsDistillation(temperature=2.0), LogitsDistillation(temperature=5.0)],
        distillation_loss_weights=[1.0, 0.25],
        student_loss_weight=0.3,
    )
    distiller.compile(optimizer="adam", loss=CE)
    values = {k: float(v) for k, v in distiller.term_losses(x, y).items()}
    t = np.asarray(distiller.teacher(x))
    s = np.asarray(distiller.student(x))
    assert values["distillation_loss_0"] == pytest.approx(numpy_kd(t, s, 2.0).mean(), rel=1e-4)
    assert values["distillation_loss_1"] == pytest.approx(numpy_kd(t, s, 5.0).mean(), rel=1e-4)
    assert values["student_loss"] == pytest.approx(float(CE(y, s)), rel=1e-4)
    weights = [float(term.loss_weight.numpy()) for term in distiller.terms]
    assert weights == pytest.approx([0.3, 0.7, 0.7 * 0.25])


def test_logits_distillation_uses_log_softmax_kl_not_kerass_clipped_logits():
    rng = np.random.default_rng(3)
    t = rng.normal(size=(8, 5)).astype("float32") * 4
    s = rng.normal(size=(8, 5)).astype("float32")
    loss = LogitsDistillation(temperature=3.0)
    term = keras_kd.KerasLogitsDistillation(loss)
    ours = np.asarray(term(s, [t]))
    np.testing.assert_allclose(ours, numpy_kd(t, s, 3.0), rtol=1e-4, atol=1e-6)
    # keras.distillation's default (the "kl_divergence" string) applies the
    # clipped KL to the tempered logits themselves: another number.
    keras_value = float(loss.compute_loss(t, s))
    assert abs(keras_value - ours.mean()) > 0.1
    # With a KLDivergence() instance Keras softmaxes first: close to ours
    # where no probability is clipped.
    instance = LogitsDistillation(temperature=3.0, loss=keras.losses.KLDivergence())
    assert float(instance.compute_loss(t, s)) == pytest.approx(ours.mean(), rel=1e-3)
    np.testing.assert_allclose(
        np.asarray(keras_kd.KerasLogitsDistillation(instance)(s, [t])), ours, rtol=1e-5
    )


def test_other_logits_losses_follow_keras_on_tempered_logits():
    rng = np.random.default_rng(4)
    t, s = rng.normal(size=(6, 3)).astype("float32"), rng.normal(size=(6, 3)).astype("float32")
    loss = LogitsDistillation(temperature=2.0, loss="mse")
    ours = np.asarray(keras_kd.KerasLogitsDistillation(loss)(s, [t]))
    assert ours.shape == (6,)
    assert ours.mean() == pytest.approx(float(loss.compute_loss(t, s)), rel=1e-5)


def test_loss_string_means_cross_entropy_from_logits():
    distiller = keras_style()
    distiller.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = data(8)
    value = float(distiller.term_losses(x, y)["student_loss"])
    assert value == pytest.approx(float(CE(y, distiller.student(x))), rel=1e-5)


def test_sample_weight_is_honoured():
    distiller = keras_style()
    distiller.compile(optimizer="adam", loss=CE)
    before = weights_of(distiller.student)
    x, y = data(16)
    distiller.fit(x, y, sample_weight=np.zeros(16, "float32"), batch_size=8, verbose=0)
    # keras.distillation ignores sample_weight; here weight 0 means no update.
    assert not changed(before, distiller.student)
    distiller.fit(x, y, sample_weight=np.ones(16, "float32"), batch_size=8, verbose=0)
    assert changed(before, distiller.student)


def test_alpha_setter_keeps_keras_loss_weights_proportional():
    distiller = keras_style(
        losses=[LogitsDistillation(), FeatureDistillation(teacher_layer_name="out",
                                                          student_layer_name="out")],
        distillation_loss_weights=[1.0, 0.5],
    )
    distiller.compile(optimizer="adam", loss=CE)
    distiller.alpha = 0.2
    weights = [float(term.loss_weight.numpy()) for term in distiller.terms]
    assert weights == pytest.approx([0.2, 0.8, 0.4])
    assert distiller.student_loss_weight == pytest.approx(0.2)


# ------------------------------------------------------ positional orders


def test_keras_positional_order_is_kept_with_a_third_argument():
    teacher, student = make_model(32, "teacher", seed=1), make_model(8, "student", seed=2)
    distiller = keras_kd.Distiller(teacher, student, LogitsDistillation(temperature=2.0))
    assert distiller.teacher is teacher and distiller.student is student
    distiller.compile("adam", CE, ["accuracy"])  # keras.distillation's compile order
    assert distiller.terms[0].loss_fn is CE
    history = distiller.fit(*data(16), batch_size=8, verbose=0)
    assert "accuracy" in history.history


def test_keras_kd_positional_order_is_kept_with_two_models():
    teacher, student = make_model(32, "teacher", seed=1), make_model(8, "student", seed=2)
    distiller = keras_kd.Distiller(student, teacher)
    assert distiller.teacher is teacher and distiller.student is student
    distiller.compile("adam", alpha=0.3, temperature=2.0)
    assert distiller.alpha == pytest.approx(0.3) and distiller.temperature == 2.0


def test_two_positional_models_in_keras_order_are_refused():
    # 5,000 hidden units: 35,003 parameters against 35; tiny pairs are never refused.
    teacher, student = make_model(5000, "teacher", seed=1), make_model(4, "student", seed=2)
    with pytest.raises(ValueError, match="look swapped.*keyword"):
        keras_kd.Distiller(teacher, student)
    assert teacher.trainable and student.trainable
    # With keywords, a large student is the caller's choice.
    distiller = keras_kd.Distiller(student=teacher, teacher=student)
    assert distiller.student is teacher


def test_small_models_are_never_refused_positionally():
    bigger, smaller = make_model(64, "bigger", seed=1), make_model(4, "smaller", seed=2)
    distiller = keras_kd.Distiller(bigger, smaller)  # 515 against 35 parameters
    assert distiller.student is bigger


def test_keras_kd_order_with_keras_losses_is_refused():
    teacher, student = make_model(5000, "teacher", seed=1), make_model(4, "student", seed=2)
    with pytest.raises(ValueError, match="look swapped"):
        keras_kd.Distiller(student, teacher, LogitsDistillation())


def test_a_model_given_twice_is_refused():
    with pytest.raises(TypeError, match="two values for `student`"):
        keras_kd.Distiller(make_model(), student=make_model(seed=3))


def test_third_positional_list_of_numbers_is_keras_kd_teacher_weights():
    student = make_model(8, "student", seed=2)
    teachers = [make_model(16, "t1", seed=1), make_model(16, "t2", seed=3)]
    distiller = keras_kd.Distiller(student, teachers, [2.0, 1.0])
    assert distiller.teacher_weights == [2.0, 1.0] and distiller.student is student


# ------------------------------------------------------ features and mixing


def test_feature_distillation_by_layer_name_matches_manual_mse():
    teacher, student = make_model(8, "teacher", seed=1), make_model(8, "student", seed=2)
    distiller = keras_kd.Distiller(
        teacher=teacher, student=student,
        distillation_losses=FeatureDistillation(teacher_layer_name="h", student_layer_name="h"),
    )
    distiller.compile(optimizer="adam", loss=CE)
    x, y = data(8)
    value = float(distiller.term_losses(x, y)["distillation_loss"])
    hidden = lambda m: np.asarray(keras.Model(m.inputs, m.get_layer("h").output)(x))
    assert value == pytest.approx(np.mean((hidden(teacher) - hidden(student)) ** 2), rel=1e-5)
    before = weights_of(student)
    distiller.fit(x, y, batch_size=4, verbose=0)
    assert changed(before, student)


def test_feature_distillation_shape_mismatch_points_to_hint_loss():
    with pytest.raises(ValueError, match="HintLoss"):
        keras_style(losses=FeatureDistillation(teacher_layer_name="h", student_layer_name="h"))


def test_unknown_layer_name_is_reported_at_construction():
    teacher = make_model(32, "teacher", seed=1)
    with pytest.raises(ValueError, match="nope"):
        keras_style(teacher=teacher,
                    losses=FeatureDistillation(teacher_layer_name="nope", student_layer_name="h"))
    assert teacher.trainable  # refused before freezing


def test_keras_losses_and_keras_kd_terms_mix():
    distiller = keras_style()
    hint = keras_kd.HintLoss(student_layer="h", teacher_layer="h", loss_weight=0.5)
    distiller.compile(optimizer="adam", loss=CE, distillation_terms=[hint])
    adapter_before = weights_of(hint.adapters[0])
    history = distiller.fit(*data(16), batch_size=8, verbose=0)
    assert {"distillation_loss", "hint_loss", "student_loss"} <= set(history.history)
    assert any(not np.array_equal(a, b) for a, b in zip(adapter_before, hint.adapters[0].get_weights()))


class MeanAbsoluteLogits(DistillationLoss):
    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return ops.mean(ops.abs(teacher_outputs - student_outputs))


def test_user_subclass_trains_and_matches_its_compute_loss():
    distiller = keras_style(losses=MeanAbsoluteLogits())
    distiller.compile(optimizer="adam", loss=CE)
    x, y = data(8)
    expected = float(ops.mean(ops.abs(distiller.teacher(x) - distiller.student(x))))
    assert float(distiller.term_losses(x, y)["distillation_loss"]) == pytest.approx(expected, rel=1e-5)
    before = weights_of(distiller.student)
    distiller.fit(x, y, batch_size=4, verbose=0)
    assert changed(before, distiller.student)


# ------------------------------------------------------------- bad input


class RejectsEverything(DistillationLoss):
    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return ops.mean(teacher_outputs - student_outputs)

    def validate_outputs(self, teacher_outputs, student_outputs):
        raise ValueError("outputs need 7 classes, got 3")


def test_validate_outputs_rejection_surfaces_before_any_change():
    teacher, student = make_model(32, "teacher", seed=1), make_model(8, "student", seed=2)
    before = weights_of(student)
    with pytest.raises(ValueError, match=r"distillation_losses\[0\].*outputs need 7 classes"):
        keras_kd.Distiller(teacher=teacher, student=student, distillation_losses=RejectsEverything())
    assert teacher.trainable
    assert not changed(before, student)


@pytest.mark.parametrize(
    "argument, value, governs",
    [("alpha", 0.2, "student_loss_weight"), ("temperature", 2.0, "LogitsDistillation"),
     ("distillation_loss_fn", keras.losses.KLDivergence(), "distillation_losses")],
)
def test_keras_kd_compile_arguments_refused_with_keras_losses(argument, value, governs):
    distiller = keras_style()
    with pytest.raises(ValueError, match=f"{governs}.*Received: {argument}="):
        distiller.compile(optimizer="adam", loss=CE, **{argument: value})


def test_student_loss_weight_and_alpha_both_given_is_refused():
    distiller = keras_kd.Distiller(
        student=make_model(8, "student"), teacher=make_model(32, "teacher", seed=1),
        student_loss_weight=0.3,
    )
    with pytest.raises(ValueError, match="student_loss_weight.*governs"):
        distiller.compile(optimizer="adam", alpha=0.2)
    distiller.compile(optimizer="adam")  # student_loss_weight alone acts as alpha
    assert distiller.alpha == pytest.approx(0.3)


def test_bad_distillation_losses_name_the_argument():
    with pytest.raises(TypeError, match=r"distillation_losses\[1\]='kl'"):
        keras_style(losses=[LogitsDistillation(), "kl"])
    with pytest.raises(TypeError, match="distillation_terms"):
        keras_style(losses=[keras_kd.HintonKD()])
    with pytest.raises(ValueError, match="one weight per distillation loss"):
        keras_style(losses=[LogitsDistillation()], distillation_loss_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"student_loss_weight=1.5"):
        keras_style(student_loss_weight=1.5)
    with pytest.raises(ValueError, match="at most 100"):
        keras_style(losses=LogitsDistillation(temperature=500.0)).compile(loss=CE)
    with pytest.raises(ValueError, match="distillation_loss_weights"):
        keras_kd.Distiller(student=make_model(), teacher=make_model(seed=1),
                           distillation_loss_weights=[1.0])


# ------------------------------------------------------------ save / load


def test_keras_style_distiller_saves_and_loads(tmp_path):
    distiller = keras_style(
        losses=[LogitsDistillation(temperature=2.5),
                FeatureDistillation(teacher_layer_name="out", student_layer_name="out")],
        distillation_loss_weights=[1.0, 0.5],
        student_loss_weight=0.4,
    )
    distiller.compile(optimizer="adam", loss=CE, metrics=["accuracy"])
    x, y = data(16)
    distiller.fit(x, y, batch_size=8, verbose=0)
    path = tmp_path / "distiller.keras"
    distiller.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, keras_kd.Distiller)
    assert [type(l).__name__ for l in loaded.distillation_losses] == [
        "LogitsDistillation", "FeatureDistillation"]
    assert loaded.distillation_loss_weights == [1.0, 0.5]
    assert loaded.student_loss_weight == pytest.approx(0.4)
    assert loaded.temperature == 2.5
    np.testing.assert_allclose(loaded.predict(x, verbose=0), distiller.predict(x, verbose=0))
    assert float(loaded.term_losses(x, y)["distillation_loss_0"]) == pytest.approx(
        float(distiller.term_losses(x, y)["distillation_loss_0"]), rel=1e-5)
    loaded.fit(x, y, batch_size=8, verbose=0)  # resumes with the restored optimizer

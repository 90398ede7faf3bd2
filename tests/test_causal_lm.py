"""keras-hub causal LMs: pair checks, on-policy / sequence-level data, export.

Tiny `GPT2CausalLM`s built from configs (random weights, nothing downloaded).
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

keras_hub = pytest.importorskip("keras_hub")

import keras_kd  # noqa: E402
from keras_kd.src.models import causal_lm  # noqa: E402

VOCABULARY = 48
LENGTH = 16


def lm(vocabulary_size=VOCABULARY, layers=1, width=16, max_length=32, preprocessor=None, name=None):
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocabulary_size, num_layers=layers, num_heads=2, hidden_dim=width,
        intermediate_dim=2 * width, max_sequence_length=max_length, dropout=0.0,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor, name=name)


def gpt2_preprocessor(tokens):
    """A GPT-2 preprocessor over a tiny vocabulary (one merge), offline."""
    vocabulary = {"<|endoftext|>": 0, **{token: i + 1 for i, token in enumerate(tokens)}}
    tokenizer = keras_hub.tokenizers.GPT2Tokenizer(vocabulary=vocabulary, merges=["a b"])
    return keras_hub.models.GPT2CausalLMPreprocessor(tokenizer=tokenizer, sequence_length=8)


def batches(count=3, batch=4, length=LENGTH, seed=0, real=None):
    """`(x, y, sample_weight)` batches as a CausalLMPreprocessor yields them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        ids = rng.integers(1, VOCABULARY, (batch, length + 1)).astype("int32")
        mask = np.ones((batch, length + 1), bool)
        if real is not None:
            mask[:, real:] = False
            ids[~mask] = 0
        out.append(({"token_ids": ids[:, :-1], "padding_mask": mask[:, :-1]}, ids[:, 1:],
                    mask[:, 1:].astype("float32")))
    return out


# ------------------------------------------------------------- pair checks


def test_vocabulary_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"vocabulary_size=60.*vocabulary_size=48.*same tokenizer"):
        keras_kd.check_causal_lm_pair(lm(48), lm(60))
    with pytest.raises(ValueError, match=r"teacher\[1\].*out of scope"):
        keras_kd.check_causal_lm_pair(lm(48), [lm(48), lm(50)])
    keras_kd.check_causal_lm_pair(lm(48), [lm(48), lm(48, layers=2)])
    keras_kd.check_causal_lm_pair(lm(48), None)


def test_tokenizer_mismatch_is_refused():
    tokens = ["ab", *"abcdefghij"]
    student = lm(12, preprocessor=gpt2_preprocessor(tokens))
    same = lm(12, layers=2, preprocessor=gpt2_preprocessor(tokens))
    keras_kd.check_causal_lm_pair(student, same)
    # Same sizes, different tokens: only the vocabularies tell.
    other = lm(12, preprocessor=gpt2_preprocessor(["ab", *"abcdefghiz"]))
    with pytest.raises(ValueError, match=r"token id 11 .*'z'.*'j'"):
        keras_kd.check_causal_lm_pair(student, other)
    bigger = lm(12, preprocessor=gpt2_preprocessor(["ab", *"abcdefghijk"]))
    with pytest.raises(ValueError, match=r"tokenizer .*vocabulary_size\(\)=13.*12"):
        keras_kd.check_causal_lm_pair(student, bigger)
    # A preprocessor on one side only: the backbones decide.
    keras_kd.check_causal_lm_pair(student, lm(12))


def test_backbone_is_refused_with_the_task_model_to_pass():
    backbone = lm().backbone
    with pytest.raises(TypeError, match=r"`teacher` is a keras-hub backbone.*GPT2CausalLM\(backbone="):
        keras_kd.check_causal_lm_pair(lm(), backbone)
    with pytest.raises(TypeError, match=r"`student` is a keras-hub backbone"):
        keras_kd.check_causal_lm_pair(backbone, lm())
    with pytest.raises(TypeError, match="backbone"):
        keras_kd.OnPolicyBatches(batches(), backbone)


def test_plain_keras_models_pass_without_importing_keras_hub():
    code = (
        "import sys, keras, keras_kd\n"
        "m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])\n"
        "keras_kd.check_causal_lm_pair(m, m)\n"
        "assert 'keras_hub' not in sys.modules, 'keras_hub was imported'\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]


# --------------------------------------------------------------- generation


def test_generate_tokens_keeps_prompts_and_the_models_sampler():
    model = lm()
    own_sampler = model.sampler
    ids = np.zeros((3, 10), "int32")
    ids[:, :4] = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    mask = ids > 0
    mask[2, 2:] = False  # a shorter prompt
    first = keras_kd.generate_tokens(model, ids, mask, sampler="random", seed=3)
    again = keras_kd.generate_tokens(model, ids, mask, sampler="random", seed=3)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first[:2, :4], ids[:2, :4])
    np.testing.assert_array_equal(first[2, :2], ids[2, :2])
    assert first.dtype == np.int32 and ((first >= 0) & (first < VOCABULARY)).all()
    assert model.sampler is own_sampler and model.generate_function is None
    greedy = keras_kd.generate_tokens(model, ids, mask, sampler="greedy")
    logits = model({"token_ids": ids[:1], "padding_mask": mask[:1]})
    assert greedy[0, 4] == int(np.argmax(logits[0, 3]))
    with pytest.raises(ValueError, match="max_sequence_length=32"):
        keras_kd.generate_tokens(model, np.zeros((1, 40), "int32"), np.zeros((1, 40), bool))
    with pytest.raises(ValueError, match="Unknown sampler"):
        keras_kd.generate_tokens(model, ids, mask, sampler="beam_me_up")


# ---------------------------------------------------------------- on-policy


def test_on_policy_batch_structure_and_masks():
    student = lm()
    data = batches(count=2, real=12)  # rows of 12 real tokens, 4 of padding
    generated = keras_kd.OnPolicyBatches(data, student, lmbda=1.0, prompt_length=5,
                                         max_new_tokens=6, seed=0)
    assert len(generated) == 2
    x, y, weight = generated[0]
    source = data[0][0]["token_ids"]
    assert x["token_ids"].shape == (4, LENGTH) and y.shape == (4, LENGTH) == weight.shape
    assert (x["token_ids"].dtype, x["padding_mask"].dtype, y.dtype, weight.dtype) == (
        np.int32, np.bool_, np.int32, np.float32)
    np.testing.assert_array_equal(x["token_ids"][:, :5], source[:, :5])
    # 5 prompt + 6 generated tokens are real; the rest is padding.
    np.testing.assert_array_equal(x["padding_mask"], np.arange(LENGTH)[None].repeat(4, 0) < 11)
    assert (x["token_ids"][:, 11:] == 0).all()
    # Positions 4..9 predict the 6 generated tokens; nothing else has weight.
    expected = ((np.arange(LENGTH) >= 4) & (np.arange(LENGTH) < 10)).astype("float32")
    np.testing.assert_array_equal(weight, np.broadcast_to(expected, (4, LENGTH)))
    assert (y == keras_kd.UNLABELED).all()
    assert generated.stats["generated_tokens"] == 24 and generated.stats["generated_batches"] == 1

    passthrough = keras_kd.OnPolicyBatches(data, student, lmbda=0.0, prompt_length=5,
                                           max_new_tokens=6)
    x, y, weight = passthrough[1]
    np.testing.assert_array_equal(x["token_ids"], data[1][0]["token_ids"])
    np.testing.assert_array_equal(y, data[1][1])
    np.testing.assert_array_equal(weight, data[1][2])
    assert passthrough.stats["generated_batches"] == 0


def test_on_policy_short_rows_and_mixture():
    student = lm()
    data = batches(count=1, real=3)  # fewer real tokens than the prompt length
    x, y, weight = keras_kd.OnPolicyBatches(data, student, lmbda=1.0, prompt_length=5,
                                            max_new_tokens=4)[0]
    # The prompt is the 3 real tokens; 4 generated tokens follow them.
    np.testing.assert_array_equal(x["padding_mask"][0], np.arange(LENGTH) < 7)
    np.testing.assert_array_equal(weight[0], ((np.arange(LENGTH) >= 2) & (np.arange(LENGTH) < 6)))

    mixed = keras_kd.OnPolicyBatches(batches(count=1), student, lmbda=0.5, prompt_length=4,
                                     max_new_tokens=4, seed=7, steps=1)
    choices = [mixed.is_generated(i, epoch) for epoch in range(10) for i in range(40)]
    assert 0.4 < np.mean(choices) < 0.6
    assert choices == [mixed.is_generated(i, epoch) for epoch in range(10) for i in range(40)]


def test_on_policy_reads_a_tf_data_stream_in_order():
    data = batches(count=3)
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(data),
        output_signature=({"token_ids": tf.TensorSpec((4, LENGTH), tf.int32),
                           "padding_mask": tf.TensorSpec((4, LENGTH), tf.bool)},
                          tf.TensorSpec((4, LENGTH), tf.int32),
                          tf.TensorSpec((4, LENGTH), tf.float32)),
    )
    with pytest.raises(ValueError, match="cardinality"):
        keras_kd.OnPolicyBatches(dataset, lm(), lmbda=0.0, prompt_length=4, max_new_tokens=4)
    stream = keras_kd.OnPolicyBatches(dataset, lm(), lmbda=0.0, steps=3, prompt_length=4,
                                      max_new_tokens=4)
    for epoch in range(2):
        for index in range(3):
            np.testing.assert_array_equal(stream[index][1], data[index][1])
        stream.on_epoch_end()


def test_sequence_lengths_that_do_not_fit_are_refused():
    student = lm(max_length=32)
    with pytest.raises(ValueError, match=r"20 \+ 20 = 40 tokens is longer than the student's max_sequence_length \(32\)"):
        keras_kd.OnPolicyBatches(batches(), student, prompt_length=20, max_new_tokens=20)
    generated = keras_kd.OnPolicyBatches(batches(), student, lmbda=1.0, prompt_length=10,
                                         max_new_tokens=10)
    with pytest.raises(ValueError, match=r"does not fit the batches' sequence length \(16\)"):
        generated[0]
    with pytest.raises(ValueError, match="lmbda"):
        keras_kd.OnPolicyBatches(batches(), student, lmbda=1.5)


def test_sequence_level_dataset_labels_are_the_teachers_tokens():
    teacher = lm(layers=2)
    data = batches(count=2)
    dataset = keras_kd.sequence_level_dataset(teacher, data, prompt_length=4, max_new_tokens=5)
    elements = list(dataset.as_numpy_iterator())
    assert len(elements) == 2
    x, y, weight = elements[0]
    np.testing.assert_array_equal(x["token_ids"][:, :4], data[0][0]["token_ids"][:, :4])
    labelled = weight > 0
    np.testing.assert_array_equal(labelled, y >= 0)
    np.testing.assert_array_equal(labelled.sum(axis=1), [5] * 4)
    # Each label is the next input token, the teacher's greedy choice.
    np.testing.assert_array_equal(y[:, 3:8], x["token_ids"][:, 4:9])
    logits = teacher({"token_ids": x["token_ids"], "padding_mask": x["padding_mask"]})
    np.testing.assert_array_equal(y[:, 3], np.argmax(np.asarray(logits)[:, 3], -1))


# ------------------------------------------------------------------- export


def _verification(count=8):
    x, _, _ = batches(count=1, batch=count)[0]
    return x


def test_export_saved_model_of_a_causal_lm(tmp_path):
    student = lm()
    path = tmp_path / "student_savedmodel"
    result = keras_kd.export(student, path, verification_data=_verification(), verbose=0)
    assert result.parity.passed and result.input_name == "token_ids, padding_mask"
    assert result.parity.num_examples == 8 * LENGTH
    served = tf.saved_model.load(str(path)).signatures["serving_default"]
    x = _verification(2)
    # keras-hub declares padding_mask int32: the artifact takes what the model declares.
    assert served.structured_input_signature[1]["padding_mask"].dtype == tf.int32
    logits = served(token_ids=tf.constant(x["token_ids"][:, :7]),
                    padding_mask=tf.constant(x["padding_mask"][:, :7].astype("int32")))["logits"]
    assert logits.shape == (2, 7, VOCABULARY)  # batch and sequence stay dynamic
    with pytest.raises(ValueError, match="verification_data"):
        keras_kd.export(student, tmp_path / "other", verbose=0)
    with pytest.raises(ValueError, match=r"dict of inputs \['padding_mask', 'token_ids'\]"):
        keras_kd.export(student, tmp_path / "other", verification_data=np.zeros((2, 4)), verbose=0)


# --------------------------------------------- the Distiller around keras-hub


def _text_batches(steps, batch=8, length=LENGTH, seed=0):
    """Windows of real text: the standard library's source, as bytes."""
    from keras_kd.src.data import text_datasets

    stream = text_datasets.load_python_source()["train"][:200_000]
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(stream) - length - 1, steps * batch)
    windows = stream[starts[:, None] + np.arange(length + 1)].astype("int32")
    x = {"token_ids": windows[:, :-1], "padding_mask": np.ones((len(windows), length), bool)}
    return x, windows[:, 1:], np.ones((len(windows), length), "float32")


def _byte_lm(layers, width, seed):
    keras.utils.set_random_seed(seed)
    return lm(vocabulary_size=256, layers=layers, width=width)


@pytest.mark.slow
def test_distilled_students_loss_falls_on_real_text():
    teacher = _byte_lm(2, 32, seed=1)
    x, y, weight = _text_batches(40, seed=1)
    teacher.compile(optimizer=keras.optimizers.Adam(3e-3),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, sample_weight=weight, batch_size=8, epochs=1, verbose=0)
    student = _byte_lm(1, 16, seed=2)
    distiller = keras_kd.Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3), alpha=0.5, divergence="reverse_kl")
    held_out = _text_batches(4, seed=99)
    before = distiller.evaluate(*held_out[:2], sample_weight=held_out[2], verbose=0, return_dict=True)
    x, y, weight = _text_batches(40, seed=2)
    history = distiller.fit(x, y, sample_weight=weight, batch_size=8, epochs=1, verbose=0)
    after = distiller.evaluate(*held_out[:2], sample_weight=held_out[2], verbose=0, return_dict=True)
    assert after["loss"] < before["loss"] - 0.5, (before, after)
    assert np.isfinite(history.history["distillation_loss"][-1])
    # Then on-policy: the generated batches train too.
    on_policy = keras_kd.OnPolicyBatches(
        [tuple(part[i:i + 8] if not isinstance(part, dict) else {k: v[i:i + 8] for k, v in part.items()}
               for part in (x, y, weight)) for i in range(0, 64, 8)],
        student, lmbda=0.5, prompt_length=8, max_new_tokens=8, seed=0)
    distiller.fit(on_policy, epochs=1, verbose=0)
    assert on_policy.stats["generated_batches"] > 0
    final = distiller.evaluate(*held_out[:2], sample_weight=held_out[2], verbose=0, return_dict=True)
    assert np.isfinite(final["loss"])


def test_distiller_around_keras_hub_models_round_trips(tmp_path):
    teacher, student = _byte_lm(2, 16, seed=1), _byte_lm(1, 16, seed=2)
    distiller = keras_kd.Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam", alpha=0.25, divergence="jsd", jsd_beta=0.3)
    x, y, weight = _text_batches(2)
    distiller.fit(x, y, sample_weight=weight, batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "distiller.keras"
    distiller.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.student, keras_hub.models.GPT2CausalLM)
    assert isinstance(restored.teachers[0], keras_hub.models.GPT2CausalLM)
    np.testing.assert_allclose(restored.student(x), student(x), atol=1e-6)
    np.testing.assert_allclose(restored.teachers[0](x), teacher(x), atol=1e-6)
    assert restored.alpha == pytest.approx(0.25)
    restored.fit(x, y, sample_weight=weight, batch_size=8, epochs=1, verbose=0)


def test_distiller_refuses_a_backbone_and_a_vocabulary_mismatch():
    with pytest.raises(TypeError, match="GPT2CausalLM"):
        keras_kd.Distiller(student=lm(), teacher=lm().backbone)
    with pytest.raises(ValueError, match="same tokenizer"):
        keras_kd.Distiller(student=lm(48), teacher=lm(60))


def test_export_litert_of_a_causal_lm(tmp_path):
    student = lm()
    path = tmp_path / "student.tflite"
    result = keras_kd.export(student, path, verification_data=_verification(), verbose=0)
    assert result.format == "tflite" and result.parity.passed
    # Another batch size and sequence length than the verification data's.
    x = {"token_ids": _verification(3)["token_ids"][:, :9],
         "padding_mask": np.ones((3, 9), "int32")}
    np.testing.assert_allclose(keras_kd.run_tflite(path, x), student(x), atol=1e-4)
    with pytest.raises(ValueError, match="int8.*not supported for models with a dict of inputs"):
        keras_kd.export(student, tmp_path / "q.tflite", quantization="int8",
                        representative_data=_verification(), verbose=0)


def test_the_guides_snippet_runs(tmp_path):
    import re
    from pathlib import Path

    guide = Path(__file__).resolve().parents[1] / "docs" / "guides" / "language_models.md"
    code = re.search(r"```python\n(.*?)```", guide.read_text(), re.S).group(1)
    assert "/tmp/lm_student_savedmodel" in code
    code = code.replace("/tmp/lm_student_savedmodel", str(tmp_path / "student"))
    exec(compile(code, str(guide), "exec"), {})
    assert (tmp_path / "student" / "saved_model.pb").is_file()


def test_cached_teacher_logits_of_another_sequence_length_are_refused():
    student = lm()
    distiller = keras_kd.Distiller(student=student, teacher=None)
    distiller.compile(optimizer="adam", alpha=0.5)
    x, y, weight = batches(count=1)[0]
    before = [np.array(v) for v in student.get_weights()]
    cached = np.zeros((4, LENGTH - 4, VOCABULARY), "float32")  # a teacher run at length 12
    with pytest.raises(ValueError, match=r"same positions \(e\.g\. the same sequence length\)"):
        distiller.train_on_batch(
            {keras_kd.INPUTS_KEY: x, keras_kd.TEACHER_LOGITS_KEY: cached}, y, sample_weight=weight)
    for old, new in zip(before, student.get_weights()):
        np.testing.assert_array_equal(old, new)

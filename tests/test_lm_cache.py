"""Cached LM teacher outputs: round trip, top-k math, masks, bad input."""

import os

import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_kd
from keras_kd.src.data import lm_cache

VOCAB = 300
LENGTH = 16


def gpt2(seed=0, vocabulary_size=VOCAB):
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocabulary_size, num_layers=1, num_heads=2, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=32,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


@pytest.fixture(scope="module")
def teacher():
    model = gpt2(seed=1)
    # Sharper than a freshly initialised head, so top-k is not a coin toss.
    head = model.backbone.token_embedding
    head.embeddings.assign(head.embeddings * 20.0)
    return model


def token_batches(count=10, seed=0, batch_size=4):
    """What `CausalLMPreprocessor` yields: right-padded sequences, x without
    the last token, y without the first, sample_weight = padding_mask[1:]."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(count, LENGTH + 1)).astype("int32")
    lengths = rng.integers(4, LENGTH + 2, size=count)
    mask = np.arange(LENGTH + 1)[None] < lengths[:, None]
    ids[~mask] = 0
    x = {"token_ids": ids[:, :-1], "padding_mask": mask[:, :-1]}
    y, weight = ids[:, 1:], mask[:, 1:].astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y, weight)).batch(batch_size)
    return data, x, y, weight


def collect(train):
    out = {"values": [], "indices": [], "tail": [], "logits": [], "ids": [], "mask": [], "y": [], "w": []}
    for inputs, y, w in train:
        logits = inputs["teacher_logits"]
        if isinstance(logits, dict):
            for key in ("values", "indices", "tail"):
                out[key].append(logits[key].numpy())
        else:
            out["logits"].append(logits.numpy())
        out["ids"].append(inputs["inputs"]["token_ids"].numpy())
        out["mask"].append(inputs["inputs"]["padding_mask"].numpy())
        out["y"].append(y.numpy())
        out["w"].append(w.numpy())
    return {key: np.concatenate(value) for key, value in out.items() if value}


def numpy_logsumexp(z, axis=-1):
    top = z.max(axis=axis, keepdims=True)
    return np.log(np.exp(z - top).sum(axis=axis)) + top[..., 0]


@pytest.fixture(scope="module")
def reference(teacher):
    data, x, y, w = token_batches()
    # The teacher called as the cache writer calls it (a tf.function traced
    # for any batch size and length, on the same batches): `predict`, or
    # another batch or static shape, may round a CPU matmul differently in
    # the last bit, and the float32 test is exact.
    relaxed = {key: tf.TensorSpec([None, None], value.dtype) for key, value in x.items()}
    forward = tf.function(lambda inputs: teacher(inputs, training=False),
                          input_signature=[relaxed])
    logits = np.concatenate([np.asarray(forward(inputs), np.float64) for inputs, _, _ in data])
    return data, x, y, w, logits


def test_round_trip_full_logits_exact(teacher, reference, tmp_path):
    data, x, y, w, logits = reference
    path = tmp_path / "full.kdcache"
    header = keras_kd.cache_lm_teacher_outputs(teacher, data, path, top_k=None, dtype="float32", verbose=0)
    stored = x["padding_mask"] | (w != 0)
    assert header["token_count"] == stored.sum() < stored.size
    assert header["vocabulary_size"] == VOCAB and header["sequence_count"] == 10
    got = collect(keras_kd.load_lm_cache(path, batch_size=3, shuffle=False))
    np.testing.assert_array_equal(got["ids"], x["token_ids"])
    np.testing.assert_array_equal(got["mask"], x["padding_mask"])
    np.testing.assert_array_equal(got["y"], y)
    np.testing.assert_array_equal(got["w"], w)
    # float32 storage: the teacher's own float32 logits, bit for bit.
    np.testing.assert_array_equal(got["logits"][stored], logits[stored].astype("float32"))
    # Positions not stored: zeros (uniform), which no mask counts.
    assert not got["logits"][~stored].any()
    # float16 storage: within float16 rounding.
    header = keras_kd.cache_lm_teacher_outputs(teacher, data, path, top_k=None, verbose=0)
    got = collect(keras_kd.load_lm_cache(path, batch_size=4, shuffle=False))
    np.testing.assert_allclose(got["logits"][stored], logits[stored], rtol=1e-3, atol=1e-3)


def test_top_k_values_indices_and_tail_match_numpy(teacher, reference, tmp_path):
    data, x, y, w, logits = reference
    path = tmp_path / "top8.kdcache"
    k = 8
    header = keras_kd.cache_lm_teacher_outputs(teacher, data, path, top_k=k, verbose=0)
    assert header["top_k"] == k and header["dtype"] == "float16"
    assert header["records_bytes"] == keras_kd.lm_cache_storage_bytes(header["token_count"], VOCAB, k)
    got = collect(keras_kd.load_lm_cache(path, batch_size=4, shuffle=False))
    stored = x["padding_mask"] | (w != 0)
    z = logits[stored]  # (tokens, V) float64
    order = np.argsort(-z, axis=-1)[:, :k]
    np.testing.assert_array_equal(got["indices"][stored], order)
    np.testing.assert_allclose(got["values"][stored], np.take_along_axis(z, order, -1), rtol=1e-3, atol=1e-3)
    rest = z.copy()
    np.put_along_axis(rest, order, -np.inf, -1)
    tail = numpy_logsumexp(rest) - np.log(VOCAB - k)
    np.testing.assert_allclose(got["tail"][stored], tail, rtol=1e-3, atol=2e-3)
    # The meaning of the tail: rebuilt logits give every top-k token its exact
    # probability, and the other V - k tokens share the rest of the mass.
    rebuilt = keras.ops.convert_to_numpy(keras_kd.rebuild_top_k_logits(
        got["values"][stored], got["indices"][stored], got["tail"][stored], VOCAB))
    p_true = np.exp(z - numpy_logsumexp(z)[:, None])
    p_rebuilt = np.exp(rebuilt - numpy_logsumexp(rebuilt.astype(np.float64))[:, None])
    np.testing.assert_allclose(
        np.take_along_axis(p_rebuilt, order, -1), np.take_along_axis(p_true, order, -1), atol=2e-3)
    np.testing.assert_allclose(p_rebuilt.sum(-1), 1.0, atol=1e-5)
    # Unstored positions: placeholder values and tail 0 (uniform logits).
    assert not got["values"][~stored].any() and not got["tail"][~stored].any()


def test_plain_tensor_inputs_without_weights_store_every_token(tmp_path):
    teacher = keras.Sequential([
        keras.Input((LENGTH,), dtype="int32"), keras.layers.Embedding(VOCAB, 8), keras.layers.Dense(VOCAB),
    ])
    ids = np.random.default_rng(3).integers(0, VOCAB, size=(5, LENGTH + 1)).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((ids[:, :-1], ids[:, 1:])).batch(2)
    path = tmp_path / "plain.kdcache"
    header = keras_kd.cache_lm_teacher_outputs(teacher, data, path, top_k=4, verbose=0)
    assert header["token_count"] == 5 * LENGTH and not header["dict_inputs"]
    batches = list(keras_kd.load_lm_cache(path, batch_size=5, shuffle=False))
    assert len(batches) == 1 and len(batches[0]) == 2  # (inputs, y): no weights
    inputs, y = batches[0]
    np.testing.assert_array_equal(inputs["inputs"].numpy(), ids[:, :-1])
    np.testing.assert_array_equal(y.numpy(), ids[:, 1:])
    expected = teacher.predict(ids[:, :-1], verbose=0).max(-1)
    np.testing.assert_allclose(inputs["teacher_logits"]["values"].numpy()[..., 0], expected, rtol=1e-3, atol=1e-3)


def test_shuffle_covers_every_sequence_once_and_reshuffles(teacher, reference, tmp_path):
    data, x, *_ = reference
    path = tmp_path / "c.kdcache"
    keras_kd.cache_lm_teacher_outputs(teacher, data, path, top_k=2, verbose=0)
    train = keras_kd.load_lm_cache(path, batch_size=4, seed=5)
    epochs = [collect(train)["ids"] for _ in range(2)]
    key = lambda rows: sorted(map(tuple, rows))
    assert key(epochs[0]) == key(epochs[1]) == key(x["token_ids"])
    assert not np.array_equal(epochs[0], epochs[1])


def test_fingerprint_and_teacher_mismatch_refused(teacher, reference, tmp_path):
    data, *_ = reference
    path = tmp_path / "f.kdcache"
    header = keras_kd.cache_lm_teacher_outputs(teacher, data, path, top_k=4, verbose=0)
    keras_kd.load_lm_cache(path, dataset=data, teacher=teacher)  # the same: accepted
    other = token_batches(seed=1)[0]
    with pytest.raises(ValueError, match="differs from the token data"):
        keras_kd.load_lm_cache(path, dataset=other)
    with pytest.raises(ValueError, match="differs from the token data"):
        keras_kd.load_lm_cache(path, dataset=data.unbatch().skip(1).batch(4))
    with pytest.raises(ValueError, match="other weights"):
        keras_kd.load_lm_cache(path, teacher=gpt2(seed=9))
    # A flipped byte in the stored token data: refused.
    with open(path, "r+b") as file:
        file.seek(header["sequences_offset"] + 5)
        byte = file.read(1)
        file.seek(header["sequences_offset"] + 5)
        file.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ValueError, match="corrupted"):
        keras_kd.load_lm_cache(path)


def test_other_and_truncated_files_refused(teacher, reference, tmp_path):
    data, *_ = reference
    other = tmp_path / "notes.txt"
    other.write_text("not a cache")
    with pytest.raises(ValueError, match="not a keras-kd LM teacher cache.*load_teacher_cache"):
        keras_kd.load_lm_cache(other)
    with pytest.raises(ValueError, match="not a keras-kd teacher cache.*not overwritten"):
        keras_kd.cache_lm_teacher_outputs(teacher, data, other, verbose=0)
    assert other.read_text() == "not a cache"
    path = tmp_path / "t.kdcache"
    keras_kd.cache_lm_teacher_outputs(teacher, data, path, top_k=4, verbose=0)
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size - 1)
    with pytest.raises(ValueError, match="truncated"):
        keras_kd.load_lm_cache(path)
    # Valid JSON whose token record size disagrees with its layout.
    keras_kd.cache_lm_teacher_outputs(teacher, data, path, top_k=4, verbose=0)
    pristine = path.read_bytes()
    field = pristine.index(b'"token_record_bytes": ') + len(b'"token_record_bytes": ')
    path.write_bytes(pristine[:field] + b"9" + pristine[field + 1:])
    with pytest.raises(ValueError, match=r"header of LM teacher cache .* is inconsistent"):
        keras_kd.load_lm_cache(path)


class PoisonedLM(keras.Model):
    """Outputs `fill` wherever the input token is `poison`."""

    def __init__(self, poison, fill):
        super().__init__()
        self.poison, self.fill = poison, fill
        self.embedding = keras.layers.Embedding(VOCAB, 8)
        self.head = keras.layers.Dense(VOCAB)

    def call(self, x):
        ids = x["token_ids"]
        logits = self.head(self.embedding(ids))
        return tf.where((ids == self.poison)[..., None], tf.constant(self.fill, logits.dtype), logits)


def test_non_finite_and_float16_overflow_refused(reference, tmp_path):
    data, x, y, w, _ = reference
    path = tmp_path / "nan.kdcache"
    stored = x["padding_mask"] | (w != 0)
    poison = int(x["token_ids"][3, 2])
    with pytest.raises(ValueError, match=r"non-finite logits .* sequence\(s\) .*3.*Nothing was cached"):
        keras_kd.cache_lm_teacher_outputs(PoisonedLM(poison, np.nan), data, path, verbose=0)
    with pytest.raises(ValueError, match="beyond the range of dtype='float16'.*float32"):
        keras_kd.cache_lm_teacher_outputs(PoisonedLM(poison, 1e6), data, path, verbose=0)
    assert os.listdir(tmp_path) == []  # no file, no temporary left behind
    # NaN only where no loss looks (padding token 0 at unstored positions) is fine.
    assert (x["token_ids"][~stored] == 0).all() and (x["token_ids"][stored] != 0).all()
    header = keras_kd.cache_lm_teacher_outputs(PoisonedLM(0, np.inf), data, path, verbose=0)
    assert header["token_count"] == stored.sum()


def test_bad_arguments(teacher, reference, tmp_path):
    data, x, y, w, _ = reference
    path = tmp_path / "bad.kdcache"
    for top_k in (0, VOCAB, 1.5, True):
        with pytest.raises(ValueError, match=r"`top_k` must be None or an integer"):
            keras_kd.cache_lm_teacher_outputs(teacher, data, path, top_k=top_k, verbose=0)
    with pytest.raises(ValueError, match=r"`dtype` must be one of"):
        keras_kd.cache_lm_teacher_outputs(teacher, data, path, dtype="bfloat16", verbose=0)
    with pytest.raises(TypeError, match=r"`dataset` must be a `tf.data.Dataset`"):
        keras_kd.cache_lm_teacher_outputs(teacher, x, path, verbose=0)
    with pytest.raises(ValueError, match=r"call `.batch\(\)`"):
        keras_kd.cache_lm_teacher_outputs(teacher, data.unbatch(), path, verbose=0)
    no_ids = tf.data.Dataset.from_tensor_slices(({"ids": x["token_ids"]}, y)).batch(2)
    with pytest.raises(ValueError, match=r"keys \['ids'\]"):
        keras_kd.cache_lm_teacher_outputs(teacher, no_ids, path, verbose=0)
    floats = tf.data.Dataset.from_tensor_slices(x["token_ids"].astype("float32")).batch(2)
    with pytest.raises(ValueError, match="integer dtype"):
        keras_kd.cache_lm_teacher_outputs(teacher, floats, path, verbose=0)
    with pytest.raises(TypeError, match="Backbone.*Pass the task model"):
        keras_kd.cache_lm_teacher_outputs(teacher.backbone, data, path, verbose=0)
    classifier = keras.Sequential([keras.Input((LENGTH,), dtype="int32"), keras.layers.Dense(3)])
    plain = tf.data.Dataset.from_tensor_slices(x["token_ids"]).batch(2)
    with pytest.raises(ValueError, match=r"\(batch, sequence, vocabulary\)"):
        keras_kd.cache_lm_teacher_outputs(classifier, plain, path, verbose=0)
    with pytest.raises(ValueError, match="is an infinite"):
        keras_kd.cache_lm_teacher_outputs(teacher, data.repeat(), path, verbose=0)
    with pytest.raises(ValueError, match="`batch_size` must be an integer >= 1"):
        keras_kd.load_lm_cache(path, batch_size=0)  # before opening the file
    assert not path.exists()


def test_storage_bytes_layout():
    assert keras_kd.lm_cache_storage_bytes(1, 32_000) == 64_000
    assert keras_kd.lm_cache_storage_bytes(1, 32_000, top_k=32) == 32 * 2 + 32 * 2 + 2  # uint16 ids
    assert keras_kd.lm_cache_storage_bytes(1, 128_000, top_k=32) == 32 * 2 + 32 * 4 + 2  # int32 ids
    assert keras_kd.lm_cache_storage_bytes(2, 10, top_k=3, dtype="float32") == 2 * (12 + 6 + 4)
    with pytest.raises(ValueError, match=r"`top_k` must be None or an integer in \[1, 10\)"):
        keras_kd.lm_cache_storage_bytes(1, 10, top_k=10)
    with pytest.raises(ValueError, match="`tokens` must be an integer >= 0"):
        keras_kd.lm_cache_storage_bytes(-1, 10)


def test_tail_logit_with_ties_outliers_and_minus_inf_matches_numpy():
    """The shared top-k summary (keras_kd.src.data.cache) at the edges: tied logits at
    the k-th value, one huge logit, rows that are -inf beyond a few entries."""
    from keras_kd.src.data.cache_format import summarize_outputs

    z = np.random.default_rng(1).standard_normal((6, VOCAB)).astype("float32")
    z[0, :40] = 5.0  # 40 ties around every k below 40
    z[1, 3:] = -np.inf
    z[2] = 0.0
    z[3, 100] = 300.0
    for k in (1, 5, 32):
        tail = summarize_outputs(tf.constant(z), k, VOCAB)["tail"].numpy()
        expected = []
        for row in z.astype(np.float64):
            rest = np.delete(row, np.argsort(-row, kind="stable")[:k])
            top = rest.max()
            expected.append((np.log(np.exp(rest - top).sum()) + top if np.isfinite(top) else -np.inf)
                            - np.log(VOCAB - k))
        np.testing.assert_allclose(tail, expected, rtol=1e-6, atol=1e-5)


def test_cached_batches_give_the_live_teacher_loss(teacher, tmp_path):
    """float32 full logits: the cached batch and the live teacher give one loss."""
    data, x, y, w = token_batches(count=8, seed=2, batch_size=8)
    path = tmp_path / "full32.kdcache"
    keras_kd.cache_lm_teacher_outputs(teacher, data, path, top_k=None, dtype="float32", verbose=0)
    cached, cached_y, cached_w = next(iter(keras_kd.load_lm_cache(path, batch_size=8, shuffle=False)))
    student = gpt2(seed=3)
    live = keras_kd.Distiller(student, teacher=teacher)
    live.compile(optimizer="adam", temperature=2.0)
    offline = keras_kd.Distiller(student, teacher=None)
    offline.compile(optimizer="adam", temperature=2.0)
    expected = live.term_losses(x, y, w)
    got = offline.term_losses(cached, cached_y, cached_w)
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_allclose(float(got[name]), float(expected[name]), rtol=1e-6, err_msg=name)


def test_distiller_trains_on_the_loader_without_the_teacher(teacher, tmp_path):
    data = token_batches(count=32, seed=4, batch_size=8)[0]
    path = tmp_path / "train.kdcache"
    keras_kd.cache_lm_teacher_outputs(teacher, data, path, top_k=16, verbose=0)
    train = keras_kd.load_lm_cache(path, batch_size=8, seed=0)
    distiller = keras_kd.Distiller(gpt2(seed=3), teacher=None)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3), alpha=0.0)
    history = distiller.fit(train, epochs=6, verbose=0).history
    losses = history["distillation_loss"]  # measured: 2.18, 2.05, ..., 1.60
    assert np.isfinite(losses).all()
    assert (np.diff(losses) < 0).all() and losses[-1] < 0.85 * losses[0]

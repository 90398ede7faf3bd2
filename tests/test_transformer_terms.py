"""Transformer intermediate terms (TinyBERT / MiniLM) on tiny keras-hub BERTs."""

import numpy as np
import pytest

import keras
import keras_hub

import keras_kd
from keras_kd.src.terms import features
from keras_kd.src.models import text_models
from keras_kd.src.terms import transformer_terms as tt

SEQUENCE = 8
VOCABULARY = 40


def classifier(layers, hidden, seed, heads=2, vocabulary=VOCABULARY):
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary, num_layers=layers, num_heads=heads, hidden_dim=hidden,
        intermediate_dim=2 * hidden, max_sequence_length=SEQUENCE,
    )
    return keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=None)


def batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, SEQUENCE + 1, (n, 1))
    mask = (np.arange(SEQUENCE)[None] < lengths).astype("int32")
    ids = rng.integers(5, VOCABULARY, (n, SEQUENCE)) * mask
    x = {"token_ids": ids.astype("int32"), "segment_ids": np.zeros_like(ids, "int32"),
         "padding_mask": mask}
    return x, rng.integers(0, 3, (n,))


@pytest.fixture(scope="module")
def models():
    return classifier(4, 16, 0), classifier(2, 8, 1)


def test_masked_mean_squared_error_matches_numpy():
    rng = np.random.default_rng(0)
    t, s = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 4))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    expected = [((s[i] - t[i]) ** 2).mean(-1)[mask[i] == 1].mean() for i in range(3)]
    got = tt.masked_mean_squared_error(t.astype("float32"), s.astype("float32"), mask)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def _softmax(x, mask):
    x = np.where(mask[:, None, None, :] == 1, x, -np.inf)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("student_heads", [2, 1])
def test_attention_kl_divergence_matches_numpy(student_heads):
    rng = np.random.default_rng(1)
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]])
    p = _softmax(rng.normal(size=(2, 2, 4, 4)), mask)
    q = _softmax(rng.normal(size=(2, student_heads, 4, 4)), mask)
    pp, qq = (p, q) if student_heads == 2 else (p.mean(1, keepdims=True), q.mean(1, keepdims=True))
    kl = np.where(pp > 0, pp * (np.log(np.where(pp > 0, pp, 1)) - np.log(qq + 1e-9)), 0).sum(-1)
    expected = [kl[i].mean(0)[mask[i] == 1].mean() for i in range(2)]
    got = tt.attention_kl_divergence(p.astype("float32"), q.astype("float32"), mask)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_layer_maps():
    assert tt.layer_map(2, 4) == [(0, 1), (1, 3)]
    assert tt.layer_map(3, 12) == [(0, 3), (1, 7), (2, 11)]
    assert tt.layer_map(2, 4, "last_k", k=2) == [(0, 2), (1, 3)]
    with pytest.raises(ValueError, match="no more layers"):
        tt.layer_map(4, 2)
    with pytest.raises(ValueError, match="`k` must be"):
        tt.layer_map(2, 4, "last_k", k=3)


@pytest.mark.parametrize("term", [
    tt.HiddenStateDistillation(layer_map="last_k", k=2, loss_weight=0.5),
    tt.HiddenStateDistillation(layer_map={"a": "b"}, projection=None),
    tt.EmbeddingDistillation(student_layer="x", teacher_layer="y"),
    tt.AttentionDistillation(layer_map="uniform"),
])
def test_config_round_trip(term):
    config = term.get_config()
    clone = type(term).from_config(config)
    assert clone.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert type(revived) is type(term) and revived.get_config() == config


def test_nested_extractor_runs_the_backbone_once_and_keeps_logits(models):
    teacher, _ = models
    names = ["embeddings_layer_norm", "transformer_layer_2",
             "transformer_layer_3" + features.ATTENTION_SUFFIX]
    extractor = features.feature_extractor(teacher, names, "teacher")
    x, _ = batch()
    logits, embedded, hidden, attention = extractor(x)
    np.testing.assert_allclose(logits, teacher(x), atol=1e-6)
    assert tuple(hidden.shape) == (16, SEQUENCE, 16)
    assert tuple(attention.shape) == (16, 2, SEQUENCE, SEQUENCE)
    probabilities = np.asarray(attention)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    # Padded keys get no attention.
    assert np.all(probabilities[x["padding_mask"][:, None, None, :].repeat(2, 1).repeat(SEQUENCE, 2) == 0] == 0)


def _distiller(models, terms):
    teacher, student = models
    distiller = keras_kd.Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), distillation_terms=terms)
    return distiller


def test_distiller_trains_with_all_terms_and_padding_does_not_count(models):
    terms = [tt.HiddenStateDistillation(), tt.EmbeddingDistillation(), tt.AttentionDistillation()]
    distiller = _distiller(models, terms)
    assert terms[0].layer_pairs == [("transformer_layer_0", "transformer_layer_1"),
                                    ("transformer_layer_1", "transformer_layer_3")]
    assert terms[2].layer_pairs == [("transformer_layer_1", "transformer_layer_3")]
    x, y = batch()
    before = {k: float(v) for k, v in distiller.term_losses(x, y).items()}
    assert all(np.isfinite(v) for v in before.values())
    assert before["hidden_state_loss"] > 0 and before["attention_loss"] > 0
    # Changing the token ids at padded positions changes no term.
    other = dict(x, token_ids=np.where(x["padding_mask"] == 1, x["token_ids"], 7))
    after = {k: float(v) for k, v in distiller.term_losses(other, y).items()}
    for name in before:
        assert after[name] == pytest.approx(before[name], rel=1e-5, abs=1e-7), name
    student_weights = len(models[1].weights)
    history = distiller.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert history.history["hidden_state_loss"][-1] < history.history["hidden_state_loss"][0]
    # The projections belong to the term, not the student (nor its export).
    assert len(models[1].weights) == student_weights
    assert not any("projection" in w.path for w in models[1].weights)
    assert any("projection" in w.path for w in terms[0].weights)


def test_layer_map_naming_missing_layers_lists_those_it_has(models):
    term = tt.HiddenStateDistillation(layer_map={"transformer_layer_5": "transformer_layer_1"})
    with pytest.raises(ValueError, match=r"transformer_layer_5.*student.*transformer_layer_0', 'transformer_layer_1'"):
        _distiller(models, [term])


def test_hidden_sizes_differ_without_projection(models):
    term = tt.HiddenStateDistillation(projection=None)
    with pytest.raises(ValueError, match="hidden size 16.*8.*projection=None"):
        _distiller(models, [term])


def test_attention_of_a_model_whose_attention_cannot_be_read(models):
    teacher, _ = models
    mha_student = text_models.transformer_teacher(VOCABULARY, SEQUENCE, 3, embedding_dim=8)
    with pytest.raises(ValueError, match="TransformerEncoder.*has none"):
        tt.AttentionDistillation().resolve_layers(mha_student, teacher)
    term = tt.AttentionDistillation(layer_map={"encoder1_attention": "transformer_layer_3"})
    with pytest.raises(ValueError, match="only from keras-hub `TransformerEncoder`.*MultiHeadAttention"):
        features.feature_extractor(mha_student, term.student_feature_names, "student")


def test_vocabulary_sizes_that_differ(models):
    teacher, _ = models
    tokenizer = keras_hub.tokenizers.BertTokenizer(
        vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(10)])
    with pytest.raises(ValueError, match="15 tokens.*embedding table of 40"):
        tt.check_vocabulary(tokenizer, teacher)
    student = classifier(1, 8, 2, vocabulary=30)
    with pytest.raises(ValueError, match="different vocabularies"):
        tt.HiddenStateDistillation().resolve_layers(student, teacher)


def test_unresolved_map_outside_a_distiller_says_so():
    with pytest.raises(ValueError, match="resolve_layers"):
        tt.HiddenStateDistillation().student_feature_names

"""The BERT case's export helpers (`benchmarks/bert_export.py`) on a tiny
embedding bag with keras-hub's input dict: seconds, no pretraining (the BERT
case itself runs only as a benchmark)."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras_hub")
pytest.importorskip("ai_edge_litert")

from keras_kd.src import keras_compat  # noqa: E402

if keras_compat.KERAS_VERSION < (3, 14):
    # The benchmark's embedding bag takes keras-hub's input dict and reads
    # `token_ids` only; Keras 3.10-3.13 refuse a functional model with an
    # input that feeds nothing. The benchmark's own model, not keras_kd's.
    pytest.skip("the BERT case's models need Keras 3.14+ (inputs that feed nothing)",
                allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bert_distill  # noqa: E402
import bert_export  # noqa: E402

import keras_kd  # noqa: E402

VOCABULARY = 50


def _inputs(count, seed=0):
    ids = np.random.default_rng(seed).integers(1, VOCABULARY, (count, 32)).astype("int32")
    ids[:, 20:] = 0  # padding
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": ids > 0}


def test_token_ids_view_is_the_same_model_and_exports_full_int8(tmp_path):
    model = bert_distill.embedding_bag(VOCABULARY, 3)
    view = bert_export.token_ids_view(model)
    x = _inputs(64)
    assert view.count_params() == model.count_params()
    np.testing.assert_allclose(view.predict(x["token_ids"], verbose=0),
                               model.predict(bert_export.as_model_inputs(model, x), verbose=0), atol=1e-6)
    path = tmp_path / "bag.int8.tflite"
    bert_export.export_checked(view, path, (x["token_ids"], np.zeros(64, "int32")),
                               quantization="int8", representative_data=x["token_ids"])
    assert bert_export.float_ops(path.read_bytes()) == []
    median, p90 = bert_export.latency_ms(bert_export.litert_call(path), {"token_ids": x["token_ids"]}, runs=10)
    assert 0 < median <= p90


def test_the_dict_input_model_is_refused_int8_and_its_saved_model_has_its_parameters(tmp_path):
    model = bert_distill.embedding_bag(VOCABULARY, 3)
    x = bert_export.as_model_inputs(model, _inputs(16))
    with pytest.raises(ValueError, match="dict of inputs"):
        keras_kd.export(model, tmp_path / "bag.tflite", quantization="int8", representative_data=x,
                        verbose=0)
    keras_kd.export(model, tmp_path / "bag", verification_data=x, verbose=0)
    assert bert_export.saved_model_parameters(tmp_path / "bag") == (model.count_params(), [])
    logits = bert_export.saved_model_call(tmp_path / "bag")(x)
    np.testing.assert_allclose(logits, model.predict(x, verbose=0), atol=1e-5)

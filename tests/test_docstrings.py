"""The examples in the public docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = [
    "keras_kd.losses",
    "keras_kd.terms",
    "keras_kd.distiller",
    "keras_kd.keras_distillation",
    "keras_kd.models",
    "keras_kd.datasets",
    "keras_kd.demo",
    "keras_kd.features",
    "keras_kd.schedules",
    "keras_kd.callbacks",
    "keras_kd.cache",
    "keras_kd.lm_cache",
    "keras_kd.transfer",
    "keras_kd.export",
    "keras_kd.evaluation",
    "keras_kd.report",
    "keras_kd.text_datasets",
    "keras_kd.text_models",
    "keras_kd.augment",
    "keras_kd.tuning",
    "keras_kd.io_utils",
    "keras_kd.quantization",
    "keras_kd.divergences",
    "keras_kd.positions",
    "keras_kd.accumulation",
    "keras_kd.causal_lm",
    "keras_kd.transformer_terms",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module_name} has no docstring examples"
    assert result.failed == 0

"""The examples in the public docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = [
    "keras_kd.src.terms.losses",
    "keras_kd.src.terms.terms",
    "keras_kd.src.distiller.distiller",
    "keras_kd.src.terms.keras_distillation",
    "keras_kd.src.models.models",
    "keras_kd.src.data.datasets",
    "keras_kd.src.cli.demo",
    "keras_kd.src.terms.features",
    "keras_kd.src.callbacks.schedules",
    "keras_kd.src.callbacks.callbacks",
    "keras_kd.src.data.cache",
    "keras_kd.src.data.lm_cache",
    "keras_kd.src.data.transfer",
    "keras_kd.src.export.export",
    "keras_kd.src.report.evaluation",
    "keras_kd.src.report.report",
    "keras_kd.src.data.text_datasets",
    "keras_kd.src.models.text_models",
    "keras_kd.src.augment.augment",
    "keras_kd.src.tuning.tuning",
    "keras_kd.src.utils.io_utils",
    "keras_kd.src.export.quantization",
    "keras_kd.src.terms.divergences",
    "keras_kd.src.distiller.positions",
    "keras_kd.src.distiller.accumulation",
    "keras_kd.src.utils.optional",
    "keras_kd.src.utils.arguments",
    "keras_kd.src.distiller.compile_arguments",
    "keras_kd.src.distiller.init_arguments",
    "keras_kd.src.distiller.step_inputs",
    "keras_kd.src.distiller.term_reduction",
    "keras_kd.src.models.causal_lm",
    "keras_kd.src.terms.transformer_terms",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name):
    from keras_kd.src import keras_compat

    if module_name.endswith(".keras_distillation") and not keras_compat.HAS_KERAS_DISTILLATION:
        pytest.skip(keras_compat.KERAS_DISTILLATION_MISSING)
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module_name} has no docstring examples"
    assert result.failed == 0

"""Intermediate features by layer name, for the feature distillation terms.

A `Distiller` whose terms name layers (`HintLoss`, `AttentionTransfer`, ...)
runs the student and the teacher through *feature extractors*: Functional
models built once, in `compile`, from each model's own layer graph, that
return the logits followed by the named layers' outputs. They share every
layer (and weight) with the model they come from, so training the extractor
trains the student itself, and nothing about the student changes.
"""

from __future__ import annotations

from typing import Sequence

import keras


def _graph_inputs(model: keras.Model, argument: str):
    """The model's symbolic inputs, or a clear error if it has no graph."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            f"Feature distillation reads intermediate layer outputs from the "
            f"{argument}'s layer graph, but `{argument}` ({model.name!r}, a "
            f"{type(model).__name__}) has none: it is a subclassed model, or "
            "a Sequential model built without an input shape. Build it with "
            "the Functional API (`keras.Model(inputs, outputs)`) or as "
            "`keras.Sequential([keras.Input(shape), ...])`, or use only "
            "logit terms (e.g. `HintonKD`, `DecoupledKD`) with it."
        )
    return inputs


def feature_extractor(
    model: keras.Model, layer_names: Sequence[str], argument: str = "model"
) -> keras.Model:
    """A model returning `[logits, *outputs of layer_names]` for `model`.

    Args:
        model: A Functional or Sequential `keras.Model` with a layer graph.
        layer_names: Names of layers of `model` (its top-level layers).
        argument: How to call the model in error messages
            (`"student"`, `"teacher"`).

    Returns:
        A `keras.Model` with the same inputs as `model`, sharing its layers.

    Raises:
        ValueError: if the model has no layer graph, a name is unknown (the
            error lists the available names), or a layer has no single
            output tensor.

    Example:

    >>> from keras_kd import models
    >>> extractor = feature_extractor(models.cnn_student(), ["block2"])
    >>> [tuple(o.shape) for o in extractor.outputs]
    [(None, 10), (None, 14, 14, 16)]
    """
    inputs = _graph_inputs(model, argument)
    available = [layer.name for layer in model.layers]
    outputs = []
    for name in layer_names:
        if name not in available:
            raise ValueError(
                f"`{argument}` ({model.name!r}) has no layer named {name!r}. "
                f"Available layer names: {available}."
            )
        try:
            output = model.get_layer(name).output
        except (AttributeError, ValueError) as error:
            raise ValueError(
                f"The output of the {argument}'s layer {name!r} is not "
                f"defined in its graph ({error}). Pick a layer that is called "
                "once, on the model's own inputs."
            ) from None
        if isinstance(output, (list, tuple, dict)):
            raise ValueError(
                f"The {argument}'s layer {name!r} has several outputs; feature "
                "distillation needs a layer with one output tensor."
            )
        outputs.append(output)
    # `model.outputs`, not `model.output`: a Sequential model keeps its graph
    # in an inner Functional model and has no `output` of its own.
    return keras.Model(
        inputs, [*model.outputs[:1], *outputs], name=f"{model.name}_features"
    )


def feature_shapes(extractor: keras.Model, layer_names: Sequence[str]) -> dict:
    """`{layer_name: shape}` (with the batch axis) of an extractor's features."""
    return {
        name: tuple(output.shape)
        for name, output in zip(layer_names, extractor.outputs[1:])
    }

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

from keras_kd.src import keras_compat


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


#: Appended to the name of a keras-hub `TransformerEncoder`, names its
#: self-attention probabilities `(batch, heads, queries, keys)` as a feature.
ATTENTION_SUFFIX = ":attention_scores"


def _nested_models(model: keras.Model) -> list:
    """The model's top-level layers that are models with a layer graph."""
    nested = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            try:
                if layer.inputs:
                    nested.append(layer)
            except (AttributeError, ValueError):
                continue
    return nested


def _is_transformer_encoder(layer) -> bool:
    try:
        import keras_hub
    except ImportError:  # keras-hub is optional
        return False
    return isinstance(layer, keras_hub.layers.TransformerEncoder)


def available_feature_names(model: keras.Model) -> list:
    """The feature names `feature_extractor` accepts for `model`.

    Its top-level layers, the layers of the models nested in it one level
    deep (e.g. a keras-hub task's backbone), and, for each keras-hub
    `TransformerEncoder`, its name + `ATTENTION_SUFFIX`.

    Example:

    >>> from keras_kd import models
    >>> available_feature_names(models.cnn_student())[:2]
    ['image', 'block1']
    """
    names = [layer.name for layer in model.layers]
    for nested in _nested_models(model):
        names.extend(layer.name for layer in nested.layers if layer.name not in names)
    layers = list(model.layers) + [l for n in _nested_models(model) for l in n.layers]
    names.extend(l.name + ATTENTION_SUFFIX for l in layers if _is_transformer_encoder(l))
    return names


@keras.saving.register_keras_serializable(package="keras_kd")
class _AttentionProbabilities(keras.layers.Layer):
    """Calls a keras-hub `TransformerEncoder` again on the same inputs with
    `return_attention_scores=True` and returns the attention probabilities
    (softmax over keys, before dropout). Symbolic calls of the encoder
    cannot return them, hence this wrapper, used only in extractors."""

    def __init__(self, encoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder

    def call(self, x, padding_mask=None, attention_mask=None, training=None):
        _, scores = self.encoder(
            x, padding_mask=padding_mask, attention_mask=attention_mask,
            training=training, return_attention_scores=True,
        )
        return scores

    def compute_output_spec(self, x, padding_mask=None, attention_mask=None, training=None):
        heads = self.encoder.num_heads
        return keras.KerasTensor((x.shape[0], heads, x.shape[1], x.shape[1]), dtype="float32")


def _single_node(layer, argument: str, what: str):
    nodes = keras_compat.call_nodes(layer)
    if len(nodes) != 1:
        raise ValueError(
            f"The {argument}'s {what} {layer.name!r} is called {len(nodes)} times in its "
            "graph; feature distillation needs it called once."
        )
    return nodes[0]


def _attention_output(encoder, argument: str):
    if not _is_transformer_encoder(encoder):
        raise ValueError(
            f"Attention probabilities can be read only from keras-hub "
            f"`TransformerEncoder` layers (keras_hub.layers.TransformerEncoder, "
            f"whose call takes `return_attention_scores=True`; BERT, RoBERTa, "
            f"DistilBERT, ... backbones use them). The {argument}'s layer "
            f"{encoder.name!r} is a {type(encoder).__name__}."
        )
    node = _single_node(encoder, argument, "encoder layer")
    args, kwargs = node.arguments.args, node.arguments.kwargs
    x = args[0] if args else kwargs["inputs"]
    return _AttentionProbabilities(encoder, name=f"{encoder.name}_attention_probabilities")(
        x, padding_mask=kwargs.get("padding_mask"), attention_mask=kwargs.get("attention_mask")
    )


def _layer_output(model, name: str, argument: str):
    base, attention = name, False
    if name.endswith(ATTENTION_SUFFIX):
        base, attention = name[: -len(ATTENTION_SUFFIX)], True
    layer = model.get_layer(base)
    if attention:
        return _attention_output(layer, argument)
    try:
        output = layer.output
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
    return output


def feature_extractor(
    model: keras.Model, layer_names: Sequence[str], argument: str = "model"
) -> keras.Model:
    """A model returning `[logits, *outputs of layer_names]` for `model`.

    Args:
        model: A Functional or Sequential `keras.Model` with a layer graph.
        layer_names: Names of layers of `model`: its top-level layers, or
            the layers of one model nested in it (e.g. `"transformer_layer_0"`
            in a keras-hub `BertTextClassifier`, inside its backbone), or a
            keras-hub `TransformerEncoder`'s name + `ATTENTION_SUFFIX` for its
            attention probabilities `(batch, heads, queries, keys)`.
        argument: How to call the model in error messages
            (`"student"`, `"teacher"`).

    Returns:
        A `keras.Model` with the same inputs as `model`, sharing its layers.
        With nested names, the nested model runs once: the extractor calls
        its layers directly, then the outer model's head on their result.

    Raises:
        ValueError: if the model has no layer graph, a name is unknown (the
            error lists the available names), a layer has no single
            output tensor, or attention is asked of a layer that cannot
            return it.

    Example:

    >>> from keras_kd import models
    >>> extractor = feature_extractor(models.cnn_student(), ["block2"])
    >>> [tuple(o.shape) for o in extractor.outputs]
    [(None, 10), (None, 14, 14, 16)]
    """
    inputs = _graph_inputs(model, argument)
    top = {layer.name for layer in model.layers}
    owners = {}
    for nested in _nested_models(model):
        for layer in nested.layers:
            owners.setdefault(layer.name, nested)
    available = None
    located = []
    for name in layer_names:
        base = name[: -len(ATTENTION_SUFFIX)] if name.endswith(ATTENTION_SUFFIX) else name
        if base in top:
            located.append((name, None))
        elif base in owners:
            located.append((name, owners[base]))
        else:
            available = available_feature_names(model) if available is None else available
            raise ValueError(
                f"`{argument}` ({model.name!r}) has no layer named {base!r}. "
                f"Available layer names: {available}."
            )
    nested_models = list(dict.fromkeys(owner for _, owner in located if owner is not None))
    if len(nested_models) > 1:
        raise ValueError(
            f"The {argument}'s features {list(layer_names)} come from several "
            f"nested models {[m.name for m in nested_models]}; name layers of one."
        )
    logits = model.outputs[0]
    nested_outputs = {}
    if nested_models:
        nested = nested_models[0]
        node = _single_node(nested, argument, "nested model")
        names = [name for name, owner in located if owner is nested]
        inner = keras.Model(
            nested.inputs,
            [*nested.outputs, *[_layer_output(nested, n, argument) for n in names]],
            name=f"{nested.name}_features",
        )
        results = inner(*node.arguments.args, **node.arguments.kwargs)
        count = len(nested.outputs)
        # The outer model's layers after the nested one, as a model of its
        # outputs: the nested model is not run a second time.
        head = keras.Model(list(node.output_tensors), model.outputs[0], name=f"{model.name}_head")
        logits = head(list(results[:count]))
        nested_outputs = dict(zip(names, results[count:]))
    outputs = [
        nested_outputs[name] if owner is not None else _layer_output(model, name, argument)
        for name, owner in located
    ]
    # `model.outputs`, not `model.output`: a Sequential model keeps its graph
    # in an inner Functional model and has no `output` of its own.
    return keras.Model(inputs, [logits, *outputs], name=f"{model.name}_features")


def feature_shapes(extractor: keras.Model, layer_names: Sequence[str]) -> dict:
    """`{layer_name: shape}` (with the batch axis) of an extractor's features."""
    return {
        name: tuple(output.shape)
        for name, output in zip(layer_names, extractor.outputs[1:])
    }

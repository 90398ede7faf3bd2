"""What a model outputs, read from its layers and shapes (no forward pass).

Shared by the distiller (which refuses probabilities where logits are
needed), the export and the report.
"""

from typing import Optional

import keras


def ends_in_softmax(model: keras.Model) -> bool:
    """True when the model's last layer applies a softmax."""
    layers = getattr(model, "layers", None)
    if not layers:
        return False
    last = layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    return activation is keras.activations.softmax or getattr(
        activation, "__name__", None
    ) == "softmax"


def output_classes(model: keras.Model) -> Optional[int]:
    """The size of the model's last output axis (its classes), or `None`
    when the model has several outputs or no known shape."""
    try:
        shape = model.output_shape
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(shape, list):
        return None
    return shape[-1] if shape else None

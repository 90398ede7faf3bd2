"""Quantization-aware students: fake-quantized int8 training for Keras 3.

`quantization_aware(model)` returns a copy of a Functional or Sequential
student in which

- every Conv1D/Conv2D kernel is fake-quantized per output channel and every
  Dense kernel per tensor, symmetrically to int8 (`[-127, 127]`, zero point
  0), as the LiteRT (TFLite) converter quantizes conv and fully-connected
  kernels; an Embedding table is quantized the same way, per tensor
  (`QuantizedEmbedding`, an int8 GATHER in the file), and an integer
  (token-id) input, which may only feed Embedding layers, stays int32;
- the model input and every new activation tensor (the output of a
  Dense/Conv layer, of an activation layer, of an unfolded
  BatchNormalization and of a global average pooling) go through an
  `ActivationQuantizer`: asymmetric 8-bit fake quantization over a range
  tracked as a moving average of the batch min/max while training. The
  outputs of `tanh` and `sigmoid` are fake-quantized over the fixed ranges of
  LiteRT's int8 TANH and LOGISTIC kernels instead (`FIXED_OUTPUT_RANGES`).
  A GlobalAveragePooling1D that receives a padding mask becomes
  `QuantizedMaskedAveragePooling1D`, whose masked sum and count get ranges of
  their own, so the masked mean is int8 too.

Under `tf.distribute` (MirroredStrategy, tested on two logical CPU devices)
the moving-average ranges are updated from the min/max of the global batch,
so a student trained on several replicas has the weights and ranges one
device gives on the same batches.

Both use Keras's public `keras.quantizers.fake_quant_with_min_max_vars`, which
on the TensorFlow backend emits `tf.quantization.fake_quant_with_min_max_vars`
(`..._per_channel` for kernels). Its gradient is the straight-through
estimator: the upstream gradient passes unchanged for inputs inside the range
and is zero outside it. Kernel ranges are the kernel's own per-channel
max |w| (under `stop_gradient`), so every weight is inside its range and gets
the plain straight-through gradient. Activation ranges are non-trainable
moving averages, so no gradient reaches them.

Trained in a `keras_kd.Distiller` (a short fine-tune of a distilled float
student), the copy learns weights that survive int8, and
`keras_kd.export(model, "s.tflite", quantization="int8")` converts it with
the ranges it learned: the fake-quant ops in the graph give the converter
every scale, so no calibration data is needed.

BatchNormalization directly after a Dense/Conv layer without activation (and
only consumed by it) is *folded* into that layer's kernel and bias: LiteRT
folds it at conversion anyway, and only the folded kernel is the one that
gets quantized, so fake-quantizing it is what makes the Keras model compute
what the int8 file will. Folding freezes the batch statistics, as QAT
fine-tunes usually do. A BatchNormalization anywhere else stays a float
layer with its output fake-quantized (LiteRT runs it as an int8 mul/add).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import keras
import numpy as np
from keras import layers, ops

from keras_kd.src import keras_compat
from keras_kd.src.utils import arguments

__all__ = [
    "ActivationQuantizer", "QuantizedEmbedding", "QuantizedKernel",
    "QuantizedMaskedAveragePooling1D", "quantization_aware", "SUPPORTED_LAYERS",
]

#: Activations the quantization-aware layers accept (fused or as a layer).
SUPPORTED_ACTIVATIONS = ("linear", "relu", "relu6", "leaky_relu", "tanh", "sigmoid")

#: Activations whose int8 LiteRT kernels (TANH, LOGISTIC) have a fixed output
#: quantization: tanh scale 1/128, zero point 0; sigmoid scale 1/256, zero
#: point -128. Their outputs are fake-quantized over exactly these ranges.
FIXED_OUTPUT_RANGES = {"tanh": (-1.0, 127.0 / 128.0), "sigmoid": (0.0, 255.0 / 256.0)}


# Layers copied as they are: they do not create new values (pooling by max,
# reshaping) or are the identity at inference (dropout). LiteRT gives their
# outputs the scale of their inputs.
_PASSTHROUGH = (
    layers.InputLayer, layers.Flatten, layers.Reshape, layers.Dropout,
    layers.SpatialDropout1D, layers.SpatialDropout2D,
    layers.MaxPooling1D, layers.MaxPooling2D, layers.AveragePooling1D,
    layers.AveragePooling2D, layers.GlobalMaxPooling1D, layers.GlobalMaxPooling2D,
)
# Layers whose output gets its own range.
_NEW_RANGE = (
    layers.ReLU, layers.LeakyReLU, layers.Activation, layers.BatchNormalization,
    layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D,
)
_KERNEL = (layers.Dense, layers.Conv1D, layers.Conv2D)
_EMBEDDING = (layers.Embedding,)
_FUSED_ACTIVATIONS = ("linear", "relu", "relu6")

#: Names of the layer types `quantization_aware` accepts.
SUPPORTED_LAYERS = tuple(
    sorted({cls.__name__ for cls in _KERNEL + _EMBEDDING + _NEW_RANGE + _PASSTHROUGH})
)


def _check_positive_fraction(value, argument: str) -> None:
    arguments.fraction(value, argument, include_zero=True)


def _global_min_max(x):
    """The min and max of `x` over the whole global batch.

    Under a `tf.distribute` strategy with several replicas in sync, each
    replica sees its share of the batch: the replicas' mins and maxes are
    gathered, so every replica gets the range one device would compute on
    the whole batch (an empty share contributes +inf/-inf, which the caller's
    clamp to 0 absorbs).
    """
    low, high = ops.min(x), ops.max(x)
    if keras.backend.backend() != "tensorflow":
        return low, high
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return low, high
    gathered = context.all_gather(tf.stack([-low, high])[None], axis=0)
    return -tf.reduce_max(gathered[:, 0]), tf.reduce_max(gathered[:, 1])


@keras.saving.register_keras_serializable(package="keras_kd")
class ActivationQuantizer(layers.Layer):
    """Fake-quantizes a tensor to 8 bits over a moving-average range.

    In training (`training=True`) the range `[min, max]` (always containing
    0, as LiteRT requires) is updated first, as
    `momentum * range + (1 - momentum) * batch range` (the first batch sets
    it), then the input is fake-quantized over it with
    `keras.quantizers.fake_quant_with_min_max_vars` (asymmetric, 256 levels,
    the int8 scale and zero point of the converted tensor). At inference the
    stored range is used as it is. With `fixed_range=(lo, hi)` the range
    never moves.

    Under `tf.distribute` (e.g. `MirroredStrategy`) the batch range is the
    min/max over the *global* batch (gathered from all replicas), so every
    replica updates the range to the same value, the one a single device
    gets on the same batches; the range variables are written once per step
    (`aggregation="only_first_replica"`), not averaged.

    Args:
        momentum: Weight of the old range in the moving average, in [0, 1).
        fixed_range: `(min, max)` to use instead of a learned range, or None.
        num_bits: Bit width. Defaults to 8.

    Example:

    >>> import numpy as np
    >>> quantizer = ActivationQuantizer()
    >>> _ = quantizer(np.linspace(-1, 1, 8, dtype="float32")[None], training=True)
    >>> [round(float(v), 3) for v in (quantizer.range_min, quantizer.range_max)]
    [-1.0, 1.0]
    """

    def __init__(self, momentum: float = 0.99, fixed_range: Optional[tuple] = None,
                 num_bits: int = 8, **kwargs):
        super().__init__(**kwargs)
        _check_positive_fraction(momentum, "momentum")
        if fixed_range is not None:
            fixed_range = tuple(float(v) for v in fixed_range)
            if len(fixed_range) != 2 or not fixed_range[0] <= 0.0 <= fixed_range[1] or (
                    fixed_range[0] == fixed_range[1]):
                raise ValueError(
                    "`fixed_range` must be `(min, max)` with min <= 0 <= max and "
                    f"min < max. Received: fixed_range={fixed_range!r}."
                )
        if not isinstance(num_bits, int) or not 2 <= num_bits <= 16:
            raise ValueError(
                f"`num_bits` must be an integer in [2, 16]. Received: num_bits={num_bits!r}."
            )
        self.momentum = float(momentum)
        self.fixed_range = fixed_range
        self.num_bits = num_bits
        # Set by `calibrate()`: eager calls then widen the range to the
        # running min/max of what they see.
        self._calibrating = False

    def build(self, input_shape=None) -> None:
        low, high = self.fixed_range or (0.0, 0.0)
        self.range_min = self.add_weight(
            name="range_min", shape=(), initializer=keras.initializers.Constant(low),
            trainable=False, aggregation="only_first_replica",
        )
        self.range_max = self.add_weight(
            name="range_max", shape=(), initializer=keras.initializers.Constant(high),
            trainable=False, aggregation="only_first_replica",
        )
        self.initialized = self.add_weight(
            name="initialized", shape=(),
            initializer=keras.initializers.Constant(1.0 if self.fixed_range else 0.0),
            trainable=False, aggregation="only_first_replica",
        )
        self.built = True

    def call(self, inputs, training=None):
        inputs = ops.convert_to_tensor(inputs)
        if self.fixed_range is None and (training or self._calibrating):
            x = ops.stop_gradient(ops.cast(inputs, "float32"))
            batch_min, batch_max = _global_min_max(x)
            batch_min = ops.minimum(batch_min, 0.0)
            batch_max = ops.maximum(batch_max, 0.0)
            seen = ops.greater(self.initialized, 0.5)
            if self._calibrating:
                new_min = ops.minimum(self.range_min, batch_min)
                new_max = ops.maximum(self.range_max, batch_max)
            else:
                m = self.momentum
                new_min = m * self.range_min + (1.0 - m) * batch_min
                new_max = m * self.range_max + (1.0 - m) * batch_max
            self.range_min.assign(ops.where(seen, new_min, batch_min))
            self.range_max.assign(ops.where(seen, new_max, batch_max))
            self.initialized.assign(ops.ones_like(self.initialized))
        return keras.quantizers.fake_quant_with_min_max_vars(
            inputs, self.range_min, self.range_max, num_bits=self.num_bits,
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(momentum=self.momentum, fixed_range=self.fixed_range,
                      num_bits=self.num_bits)
        return config


@keras.saving.register_keras_serializable(package="keras_kd")
class QuantizedKernel(layers.Wrapper):
    """A Dense, Conv1D or Conv2D layer whose kernel is fake-quantized to int8.

    Per output channel and symmetric: channel `c` is quantized over
    `[-m_c, m_c]` with `m_c = max |kernel[..., c]|` and 255 levels
    (`narrow_range=True`, integers -127..127, zero point 0), as LiteRT
    quantizes conv and fully-connected kernels. The bias stays float (the
    converter makes it int32 with scale input_scale * kernel_scale). The
    wrapped layer keeps its weights; gradients reach them straight through.

    Args:
        layer: A built or unbuilt `Dense`, `Conv1D` or `Conv2D` layer.

    Example:

    >>> import numpy as np, keras
    >>> layer = QuantizedKernel(keras.layers.Dense(3))
    >>> tuple(layer(np.ones((2, 4), "float32")).shape)
    (2, 3)
    """

    def __init__(self, layer: layers.Layer, **kwargs):
        if not isinstance(layer, _KERNEL):
            raise ValueError(
                "`QuantizedKernel` wraps a Dense, Conv1D or Conv2D layer. Received: "
                f"layer={layer!r} of type {type(layer).__name__}."
            )
        momentum = kwargs.pop("momentum", 0.99)
        kwargs.setdefault("name", layer.name)
        super().__init__(layer, **kwargs)
        self.momentum = momentum
        # LiteRT fuses only ReLU/ReLU6 into a conv or fully-connected op; any
        # other activation is an op of its own whose int8 input needs a range.
        activation = _activation_name(layer.activation)
        self.pre_activation = None
        if activation not in _FUSED_ACTIVATIONS:
            self.pre_activation = ActivationQuantizer(
                momentum=momentum, name=f"{layer.name}_pre_activation_quant")

    def build(self, input_shape=None) -> None:
        if not self.layer.built:
            self.layer.build(input_shape)
        if self.pre_activation is not None and not self.pre_activation.built:
            self.pre_activation.build(self.layer.compute_output_shape(input_shape))
        self.built = True

    def get_config(self) -> dict:
        config = super().get_config()
        config["momentum"] = self.momentum
        return config

    def quantized_kernel(self, kernel=None):
        """The kernel (or `kernel`) as the int8 file will hold it, dequantized."""
        kernel = ops.convert_to_tensor(self.layer.kernel if kernel is None else kernel)
        per_channel = not isinstance(self.layer, layers.Dense)
        return _symmetric_fake_quant(kernel, axis=-1 if per_channel else None)

    def call(self, inputs, training=None):
        layer = self.layer
        if isinstance(layer, layers.Dense):
            outputs = ops.matmul(inputs, self.quantized_kernel())
        elif isinstance(layer, layers.Conv1D):
            outputs = self._conv1d(inputs)
        else:
            outputs = ops.conv(inputs, self.quantized_kernel(), strides=list(layer.strides),
                               padding=layer.padding, dilation_rate=layer.dilation_rate,
                               data_format=layer.data_format)
        if layer.use_bias:
            bias = layer.bias
            if not isinstance(layer, layers.Dense) and layer.data_format == "channels_first":
                bias = ops.reshape(bias, (1, -1) + (1,) * (len(outputs.shape) - 2))
            outputs = ops.add(outputs, bias)
        if self.pre_activation is not None:
            outputs = self.pre_activation(outputs, training=training)
        if layer.activation is not None:
            outputs = layer.activation(outputs)
        return outputs

    def _conv1d(self, inputs):
        """A Conv1D as the 2D convolution LiteRT runs, with the kernel made 2D
        before it is quantized: the converter cannot reshape a per-channel
        quantized kernel (its quantized axis would move)."""
        layer = self.layer
        padding = layer.padding
        if padding == "causal":
            inputs = ops.pad(inputs, keras_compat.causal_padding(layer))
            padding = "valid"
        spatial_axis = 1 if layer.data_format == "channels_last" else 2
        outputs = ops.conv(
            ops.expand_dims(inputs, spatial_axis),
            self.quantized_kernel(ops.expand_dims(layer.kernel, 0)),
            strides=[1, layer.strides[0]], padding=padding,
            dilation_rate=[1, layer.dilation_rate[0]], data_format=layer.data_format,
        )
        return ops.squeeze(outputs, spatial_axis)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


def _symmetric_fake_quant(values, axis=None):
    """`values` on the int8 grid LiteRT gives constant weights: symmetric,
    narrow range (-127..127, zero point 0), per tensor or per `axis`."""
    reduce_axes = None if axis is None else tuple(range(len(values.shape) - 1))
    bound = ops.stop_gradient(ops.max(ops.abs(values), axis=reduce_axes))
    bound = ops.maximum(bound, 1e-8)  # an all-zero kernel: a valid range
    return keras.quantizers.fake_quant_with_min_max_vars(
        values, -bound, bound, num_bits=8, narrow_range=True, axis=axis,
    )


@keras.saving.register_keras_serializable(package="keras_kd")
class QuantizedEmbedding(layers.Wrapper):
    """An `Embedding` whose table is fake-quantized to int8, per tensor.

    The table is quantized symmetrically over `[-m, m]`, `m = max |table|`
    (integers -127..127, zero point 0). LiteRT runs the lookup as an int8
    `GATHER`, whose output keeps the table's scale, so no new activation
    range follows it. The padding mask (`mask_zero=True`) is passed on.

    Args:
        layer: A built or unbuilt `keras.layers.Embedding`.

    Example:

    >>> import numpy as np, keras
    >>> layer = QuantizedEmbedding(keras.layers.Embedding(10, 4))
    >>> tuple(layer(np.array([[1, 2, 0]])).shape)
    (1, 3, 4)
    """

    def __init__(self, layer: layers.Layer, **kwargs):
        if not isinstance(layer, layers.Embedding):
            raise ValueError(
                "`QuantizedEmbedding` wraps an Embedding layer. Received: "
                f"layer={layer!r} of type {type(layer).__name__}."
            )
        kwargs.setdefault("name", layer.name)
        super().__init__(layer, **kwargs)
        self.supports_masking = True

    def build(self, input_shape=None) -> None:
        if not self.layer.built:
            self.layer.build(input_shape)
        self.built = True

    def quantized_embeddings(self):
        """The table as the int8 file will hold it, dequantized."""
        return _symmetric_fake_quant(ops.convert_to_tensor(self.layer.embeddings))

    def call(self, inputs):
        return ops.take(self.quantized_embeddings(), ops.cast(inputs, "int32"), axis=0)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


@keras.saving.register_keras_serializable(package="keras_kd")
class QuantizedMaskedAveragePooling1D(layers.Layer):
    """`GlobalAveragePooling1D` over the unmasked steps, with int8 ranges.

    Keras computes a masked mean as `sum(x * mask) / sum(mask)` inside one
    layer, so its intermediate tensors get no fake-quantization and the
    converter's quantization-aware path leaves that `SUM` and `DIV` in
    float32. Here the masked sum is fake-quantized over a learned range (an
    int8 `SUM`) and the count of unmasked steps over the fixed range
    `[0, 255]` (scale 1: every count up to 255 is exact); LiteRT divides
    them with an int8 `DIV` into the range of the `ActivationQuantizer` that
    follows. A row with every step masked pools to 0 (Keras gives NaN).
    Without a mask it is the plain mean (an int8 `MEAN`).

    Args:
        momentum: Of the masked sum's moving-average range.
        keepdims: As in `GlobalAveragePooling1D`.

    Example:

    >>> import numpy as np
    >>> pool = QuantizedMaskedAveragePooling1D()
    >>> x = np.ones((1, 3, 2), "float32")
    >>> mask = np.array([[True, True, False]])
    >>> [round(float(v), 2) for v in pool(x, mask=mask, training=True)[0]]
    [1.0, 1.0]
    """

    def __init__(self, momentum: float = 0.99, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.keepdims = keepdims
        self.supports_masking = True
        self.sum_quantizer = ActivationQuantizer(momentum=momentum, name=f"{self.name}_sum_quant")
        self.count_quantizer = ActivationQuantizer(
            fixed_range=(0.0, 255.0), name=f"{self.name}_count_quant")

    def build(self, input_shape=None) -> None:
        for quantizer in (self.sum_quantizer, self.count_quantizer):
            if not quantizer.built:
                quantizer.build(None)
        self.built = True

    def call(self, inputs, mask=None, training=None):
        if mask is None:
            return ops.mean(inputs, axis=1, keepdims=self.keepdims)
        mask = ops.cast(mask, "bool")
        summed = ops.sum(ops.where(mask[..., None], inputs, 0.0), axis=1, keepdims=self.keepdims)
        summed = self.sum_quantizer(summed, training=training)
        count = ops.maximum(ops.sum(ops.cast(mask, "int32"), axis=1, keepdims=self.keepdims), 1)
        # Shaped while still int32: a float reshape before the fake-quant
        # would stay a float32 op in the file.
        count = ops.cast(ops.expand_dims(count, -1), inputs.dtype)
        count = self.count_quantizer(count, training=training)
        return summed / count

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        if self.keepdims:
            return (input_shape[0], 1, input_shape[2])
        return (input_shape[0], input_shape[2])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(momentum=self.momentum, keepdims=self.keepdims)
        return config


# ------------------------------------------------------------------ building


def _activation_name(activation) -> str:
    name = keras.activations.serialize(activation)
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
    return str(name)


def _unsupported(layer, why: str = "") -> ValueError:
    return ValueError(
        f"`quantization_aware` does not support layer {layer.name!r} of type "
        f"{type(layer).__name__}{why}. Supported layers: {', '.join(SUPPORTED_LAYERS)} "
        f"(activations: {', '.join(SUPPORTED_ACTIVATIONS)}: the ones LiteRT runs as "
        "int8 ops with a range this module can give them). Replace the layer, or "
        "export the float student with quantization='dynamic'."
    )


def _output_activation(layer) -> Optional[str]:
    """The activation applied last by `layer`, checked; None if it has none."""
    if isinstance(layer, layers.ReLU):
        if float(layer.threshold) != 0.0:
            raise _unsupported(layer, f" with threshold={layer.threshold}")
        if float(layer.negative_slope) != 0.0:
            return "leaky_relu"
        if layer.max_value is None:
            return "relu"
        if float(layer.max_value) == 6.0:
            return "relu6"
        raise _unsupported(layer, f" with max_value={layer.max_value}")
    if isinstance(layer, layers.LeakyReLU):
        return "leaky_relu"
    if isinstance(layer, (layers.Activation, *_KERNEL)):
        name = _activation_name(layer.activation)
        if name not in SUPPORTED_ACTIVATIONS:
            raise _unsupported(layer, f" with activation={name!r}")
        return name
    return None


def _check_layer(layer) -> None:
    if isinstance(layer, keras.Model):
        raise _unsupported(layer, " (a nested model: build the student from its layers)")
    if not isinstance(layer, _KERNEL + _EMBEDDING + _NEW_RANGE + _PASSTHROUGH):
        raise _unsupported(layer)
    if isinstance(layer, _KERNEL + _EMBEDDING):
        if getattr(layer, "quantization_mode", None):
            raise _unsupported(layer, f" already quantized ({layer.quantization_mode!r})")
        if getattr(layer, "lora_enabled", False):
            raise _unsupported(layer, " with LoRA enabled")
        if isinstance(layer, (layers.Conv1D, layers.Conv2D)) and getattr(layer, "groups", 1) != 1:
            raise _unsupported(layer, f" with groups={layer.groups}")
    _output_activation(layer)


def _producer(tensor):
    return keras_compat.keras_history(tensor).operation


def _foldable_batch_norms(model: keras.Model) -> Dict[int, Any]:
    """`{id(batch_norm): kernel_layer}` for BatchNormalization layers that can
    be folded into the Dense/Conv layer feeding them."""
    consumers: Dict[int, int] = {}
    for layer in model.layers:
        for node in keras_compat.call_nodes(layer):
            for tensor in node.input_tensors:
                consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1
    output_ids = {id(t) for t in model.outputs}
    folds = {}
    for layer in model.layers:
        if not isinstance(layer, layers.BatchNormalization) or len(keras_compat.call_nodes(layer)) != 1:
            continue
        (tensor,) = keras_compat.call_nodes(layer)[0].input_tensors
        source = _producer(tensor)
        if not isinstance(source, _KERNEL) or len(keras_compat.call_nodes(source)) != 1:
            continue
        if _activation_name(source.activation) != "linear":
            continue
        if consumers.get(id(tensor), 0) != 1 or id(tensor) in output_ids:
            continue
        channel_axis = len(tensor.shape) - 1
        if getattr(source, "data_format", "channels_last") == "channels_first":
            channel_axis = 1
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        axes = [axis % len(tensor.shape) for axis in axes]
        if axes != [channel_axis] or channel_axis != len(tensor.shape) - 1:
            continue
        folds[id(layer)] = source
    return folds


def _folded_weights(kernel_layer, batch_norm) -> List[np.ndarray]:
    """Kernel and bias of `kernel_layer` with `batch_norm` folded in."""
    kernel = ops.convert_to_numpy(kernel_layer.kernel).astype(np.float64)
    channels = kernel.shape[-1]
    bias = (ops.convert_to_numpy(kernel_layer.bias).astype(np.float64)
            if kernel_layer.use_bias else np.zeros(channels))
    gamma = (ops.convert_to_numpy(batch_norm.gamma).astype(np.float64)
             if batch_norm.scale else np.ones(channels))
    beta = (ops.convert_to_numpy(batch_norm.beta).astype(np.float64)
            if batch_norm.center else np.zeros(channels))
    mean = ops.convert_to_numpy(batch_norm.moving_mean).astype(np.float64)
    variance = ops.convert_to_numpy(batch_norm.moving_variance).astype(np.float64)
    factor = gamma / np.sqrt(variance + batch_norm.epsilon)
    return [(kernel * factor).astype("float32"), (beta + (bias - mean) * factor).astype("float32")]


def calibrate(model: keras.Model, data: Any, batch_size: int = 128) -> None:
    """Sets every learned activation range of `model` to the min/max it sees on
    `data` (inputs: a numpy array or a `tf.data.Dataset` of batches), running
    the model at inference. Ranges already set are widened, never narrowed.
    """
    quantizers = activation_quantizers(model)
    for quantizer in quantizers:
        quantizer._calibrating = True
    try:
        import tensorflow as tf

        if isinstance(data, tf.data.Dataset):
            batches = (b[0] if isinstance(b, tuple) else b for b in data)
        else:
            x = np.asarray(data[0] if isinstance(data, tuple) else data)
            batches = (x[i : i + batch_size] for i in range(0, len(x), batch_size))
        for batch in batches:
            model(batch, training=False)
    finally:
        for quantizer in quantizers:
            quantizer._calibrating = False


def quantization_aware(
    model: keras.Model,
    calibration_data: Any = None,
    momentum: float = 0.99,
    name: Optional[str] = None,
) -> keras.Model:
    """A copy of `model` that trains with int8 quantization in the loop.

    The copy has the same inputs, outputs and weights (with BatchNormalization
    folded where it follows a Dense/Conv layer; see the module docstring);
    Dense/Conv1D/Conv2D layers become `QuantizedKernel` wrappers of the same
    name (symmetric int8 kernels), Embedding layers `QuantizedEmbedding`
    wrappers, a channels-last GlobalAveragePooling1D a
    `QuantizedMaskedAveragePooling1D` (the plain mean without a mask), and an
    `ActivationQuantizer`
    (named `<layer>_quant`) follows the input and every layer that makes a new
    activation range. A `Sequential` model comes back as a functional `Model`
    with the same layers. `model` itself is left as it was.

    The recipe: distil a float student as usual, then
    `qat = quantization_aware(student, calibration_data=x_train[:1000])`,
    distil `qat` for a few epochs at a low learning rate (e.g. 1e-4 with
    Adam) from the same float teacher, and export it with
    `keras_kd.export(qat, "s.tflite", quantization="int8")`.

    Args:
        model: A built Functional or Sequential Keras model that outputs logits.
        calibration_data: Optional inputs (a numpy array, an `(x, y)` tuple
            or a `tf.data.Dataset` of batches) to set the activation ranges
            from before training; without it, the first training batch sets
            them.
        momentum: Of the activation ranges' moving averages, in [0, 1).
            Defaults to 0.99.
        name: Name of the copy. Defaults to `model.name`.

    Returns:
        The quantization-aware copy, a functional `keras.Model`.

    Raises:
        ValueError: For a layer it does not support (named, with its type
            and the supported list), a model that is not functional, or an
            integer input that feeds anything but Embedding layers.

    Example:

    >>> import numpy as np
    >>> from keras_kd import models
    >>> student = models.mlp((16,))
    >>> x = np.random.default_rng(0).uniform(size=(64, 28, 28, 1)).astype("float32")
    >>> qat = quantization_aware(student, calibration_data=x)
    >>> [type(layer).__name__ for layer in qat.layers][:4]
    ['InputLayer', 'ActivationQuantizer', 'Flatten', 'QuantizedKernel']
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model` must be a `keras.Model`. Received: "
            f"model={model!r} of type {type(model).__name__}."
        )
    _check_positive_fraction(momentum, "momentum")
    if isinstance(model, keras.Sequential):
        if not model.built or not keras_compat.sequential_is_functional(model):
            raise ValueError(
                f"`model` ({model.name!r}) is a Sequential model without a known input "
                "shape. Start it with `keras.Input(shape)` (or call `model.build(shape)`)."
            )
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    elif not getattr(model, "_is_graph_network", False) and not hasattr(model, "_nodes_by_depth"):
        raise ValueError(
            "`quantization_aware` rebuilds a model from its layer graph, so it needs a "
            f"Functional or Sequential model. Received: model {model.name!r} of type "
            f"{type(model).__name__} (subclassed). Rebuild it with `keras.Input`."
        )
    if len(model.inputs) != 1:
        raise ValueError(
            "`quantization_aware` supports models with a single input tensor. Received: "
            f"model {model.name!r} with {len(model.inputs)} inputs."
        )
    for layer in model.layers:
        _check_layer(layer)
    (original_input,) = model.inputs
    float_input = np.issubdtype(
        np.dtype(keras.backend.standardize_dtype(original_input.dtype)), np.floating)
    if not float_input:
        # Token ids: they stay int32 in the file and only index embedding tables.
        readers = [layer for layer in model.layers
                   if any(t is original_input for node in keras_compat.call_nodes(layer)
                          for t in node.input_tensors)]
        others = [layer.name for layer in readers if not isinstance(layer, _EMBEDDING)]
        if others:
            raise ValueError(
                "`quantization_aware` quantizes a float model input to int8; an integer "
                "input (token ids) may only feed Embedding layers, whose tables are "
                f"quantized instead. Received: input {original_input.name!r} of dtype "
                f"{original_input.dtype}, read by {others}."
            )
    folds = _foldable_batch_norms(model)
    folded_into = {id(kernel_layer): bn for bn_id, kernel_layer in folds.items()
                   for bn in model.layers if id(bn) == bn_id}

    mapped: Dict[int, Any] = {}  # id(original tensor) -> new tensor
    new_input = keras.Input(
        batch_shape=tuple(original_input.shape), dtype=original_input.dtype,
        name=_producer(original_input).name,
    )
    mapped[id(original_input)] = (
        ActivationQuantizer(momentum=momentum, name=f"{new_input.name}_quant")(new_input)
        if float_input else new_input)

    def quantizer_for(layer):
        fixed = FIXED_OUTPUT_RANGES.get(_output_activation(layer))
        return ActivationQuantizer(momentum=momentum, fixed_range=fixed, name=f"{layer.name}_quant")

    def tensor_for(tensor):
        key = id(tensor)
        if key in mapped:
            return mapped[key]
        layer, node_index, tensor_index = keras_compat.keras_history(tensor)
        node = keras_compat.call_nodes(layer)[node_index]
        if id(layer) in folds:  # a folded BatchNormalization: the identity
            (source,) = node.input_tensors
            mapped[key] = tensor_for(source)
            return mapped[key]
        args, kwargs = node.arguments.args, node.arguments.kwargs
        # A propagated mask (e.g. an Embedding's mask_zero) is recorded as a
        # keyword computed from the original tensors; the new tensors carry
        # their own, which Keras passes on.
        kwargs = {key: value for key, value in kwargs.items() if key != "mask"}
        new_args = keras.tree.map_structure(
            lambda t: tensor_for(t) if isinstance(t, keras.KerasTensor) else t, args)
        new_kwargs = keras.tree.map_structure(
            lambda t: tensor_for(t) if isinstance(t, keras.KerasTensor) else t, kwargs)
        new_layer = new_layers.get(id(layer))
        if new_layer is None:
            new_layer = new_layers[id(layer)] = _copy_layer(layer)
        outputs = new_layer(*new_args, **new_kwargs)
        if isinstance(layer, _KERNEL + _NEW_RANGE):
            outputs = quantizer_for(layer)(outputs)
        for original, new in zip(keras.tree.flatten(node.output_tensors), keras.tree.flatten(outputs)):
            mapped[id(original)] = new
        return mapped[key]

    def _copy_layer(layer):
        config = layer.get_config()
        if isinstance(layer, _KERNEL):
            batch_norm = folded_into.get(id(layer))
            if batch_norm is not None:
                config["use_bias"] = True
            inner = type(layer).from_config(config)
            wrapper = QuantizedKernel(inner, name=layer.name)
            build_shape = tuple(keras_compat.call_nodes(layer)[0].input_tensors[0].shape)
            wrapper.build(build_shape)
            weights = (_folded_weights(layer, batch_norm) if batch_norm is not None
                       else layer.get_weights())
            inner.set_weights(weights)
            return wrapper
        if isinstance(layer, _EMBEDDING):
            inner = type(layer).from_config(config)
            wrapper = QuantizedEmbedding(inner, name=layer.name)
            wrapper.build(tuple(keras_compat.call_nodes(layer)[0].input_tensors[0].shape))
            inner.set_weights(layer.get_weights())
            return wrapper
        if isinstance(layer, layers.GlobalAveragePooling1D) and layer.data_format == "channels_last":
            return QuantizedMaskedAveragePooling1D(
                momentum=momentum, keepdims=layer.keepdims, name=layer.name)
        copy = type(layer).from_config(config)
        if layer.weights:
            copy.build(tuple(keras_compat.call_nodes(layer)[0].input_tensors[0].shape))
            copy.set_weights(layer.get_weights())
        return copy

    new_layers: Dict[int, Any] = {}
    outputs = [tensor_for(t) for t in model.outputs]
    result = keras.Model(new_input, outputs[0] if len(outputs) == 1 else outputs,
                         name=name or model.name)
    if calibration_data is not None:
        calibrate(result, calibration_data)
    return result


def is_quantization_aware(model: keras.Model) -> bool:
    """Whether `model` holds fake-quantization layers from `quantization_aware`."""
    return any(isinstance(layer, (ActivationQuantizer, QuantizedKernel, QuantizedEmbedding))
               for layer in getattr(model, "layers", ()))


def uncalibrated_quantizers(model: keras.Model) -> List[str]:
    """Names of the `ActivationQuantizer`s of `model` whose range was never set."""
    return [quantizer.name for quantizer in activation_quantizers(model)
            if float(ops.convert_to_numpy(quantizer.initialized)) < 0.5]


def activation_quantizers(model: keras.Model) -> List[ActivationQuantizer]:
    """Every `ActivationQuantizer` of `model`, those inside `QuantizedKernel`
    wrappers (the input range of a tanh, sigmoid or leaky ReLU that LiteRT
    does not fuse) included."""
    found = []
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, ActivationQuantizer):
            found.append(layer)
        elif isinstance(layer, QuantizedKernel) and layer.pre_activation is not None:
            found.append(layer.pre_activation)
        elif isinstance(layer, QuantizedMaskedAveragePooling1D):
            found.extend([layer.sum_quantizer, layer.count_quantizer])
    return found

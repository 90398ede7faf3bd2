"""Input mixers for consistent teaching: `MixUp` and `CutMix`.

Beyer et al. (2022, "Knowledge distillation: a good teacher is patient and
consistent") found that a student learns most from its teacher when both see
the *same* strongly augmented input, mixup included, so that every step shows
the student a new point of the teacher's function. A `Distiller` built with
`augmentation=` applies the augmentation once per training batch, before the
teacher and the student see it.

The mixers here mix *inputs* only and work on inputs of any rank (images,
flat features, embeddings). Keras's own `keras.layers.MixUp` and
`keras.layers.CutMix` mix the labels too and expect image batches, so they
cannot serve a teacher whose output is the target, nor an MLP's flat input.
For everything else (flips, translations, crops, RandAugment) use Keras's
preprocessing layers and put a mixer last, e.g.
`keras.Sequential([keras.layers.RandomFlip("horizontal"), MixUp()])`.

A mixer returns, beside the mixed batch, what it did: each example's
partner index and the weight of the example itself. The `Distiller` uses them
for the hard-label term, which becomes `w * loss(y) + (1 - w) * loss(y_partner)`
(the loss on the mixed label, for any per-example loss); the compiled metrics
score the label with the larger weight. `mix_labeled` does the same for a
student trained alone on one-hot labels, the fair baseline for a distilled
student that saw mixed inputs.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import keras
from keras import ops

from keras_kd.src.utils import arguments

# Candidate draws per gamma sample in Marsaglia and Tsang's rejection method.
# Each is accepted with probability > 0.95 when the shape is >= 1, so eight
# of them all fail with probability < 1e-10; the mean is used then.
_GAMMA_CANDIDATES = 8


def _validate_positive(value, argument: str) -> float:
    return arguments.number(value, argument, positive=True)


def sample_gamma(shape, concentration: float, seed) -> Any:
    """Gamma(`concentration`, 1) samples from uniform and normal draws only.

    `keras.random.gamma` lowers to an op that XLA cannot compile, so the
    mixers sample with Marsaglia and Tsang's (2000) method instead, with a
    fixed number of candidates so that the graph has no loop.

    Example:

    >>> samples = sample_gamma((20000,), 2.0, seed=keras.random.SeedGenerator(0))
    >>> round(float(ops.mean(samples)), 1)
    2.0
    """
    concentration = _validate_positive(concentration, "concentration")
    boosted = concentration < 1.0
    shape_parameter = concentration + 1.0 if boosted else concentration
    d = shape_parameter - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    candidates = (_GAMMA_CANDIDATES, *shape)
    z = keras.random.normal(candidates, seed=seed)
    u = keras.random.uniform(candidates, minval=1e-12, maxval=1.0, seed=seed)
    v = ops.power(1.0 + c * z, 3)
    safe_v = ops.maximum(v, 1e-12)
    accepted = ops.logical_and(
        v > 0, ops.log(u) < 0.5 * ops.square(z) + d - d * safe_v + d * ops.log(safe_v)
    )
    # The first accepted candidate; argmax of a boolean picks the first True.
    first = ops.argmax(ops.cast(accepted, "int32"), axis=0)
    chosen = ops.take_along_axis(d * safe_v, ops.expand_dims(first, 0), axis=0)[0]
    any_accepted = ops.any(accepted, axis=0)
    samples = ops.where(any_accepted, chosen, d * ops.ones_like(chosen))
    if boosted:
        # Gamma(a) = Gamma(a + 1) * U ** (1 / a) (Marsaglia and Tsang, sec. 6).
        boost = keras.random.uniform(shape, minval=1e-12, maxval=1.0, seed=seed)
        samples = samples * ops.power(boost, 1.0 / concentration)
    return samples


def sample_beta(shape, concentration: float, seed) -> Any:
    """Symmetric Beta(`concentration`, `concentration`) samples, XLA-safe.

    `concentration=1` is the uniform distribution on [0, 1], drawn directly.

    Example:

    >>> samples = sample_beta((20000,), 0.5, seed=keras.random.SeedGenerator(0))
    >>> round(float(ops.mean(samples)), 1)
    0.5
    """
    concentration = _validate_positive(concentration, "concentration")
    if concentration == 1.0:
        return keras.random.uniform(shape, seed=seed)
    first = sample_gamma(shape, concentration, seed)
    second = sample_gamma(shape, concentration, seed)
    return first / ops.maximum(first + second, 1e-12)


def _broadcast_weight(weight, tensor):
    """Reshapes a `(batch,)` weight to broadcast over `tensor`'s other axes."""
    return ops.reshape(weight, (-1,) + (1,) * (len(tensor.shape) - 1))


@keras.saving.register_keras_serializable(package="keras_kd")
class InputMixer(keras.layers.Layer):
    """Base class of the mixers: each example is combined with a partner.

    Subclasses implement `draw(batch_size, tensor)`, which returns the
    per-example weight of the original example and whatever else the mixing
    needs (a "plan"), and `mix_tensor(tensor, partner, plan)`, which mixes one
    input tensor by that plan. The partner of each
    example is another example of the same batch, drawn by a random
    permutation. Called as a layer, a mixer returns the mixed inputs only and
    leaves its inputs alone outside training (`training=False`).

    Args:
        seed: Seed of the mixer's random draws: two mixers with the same seed
            make the same draws on the same batches.
        name: The layer's name.
    """

    def __init__(self, seed: Optional[int] = None, name: Optional[str] = None, **kwargs):
        super().__init__(name=name, **kwargs)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(
                f"`seed` must be an integer or None. Received: seed={seed!r} "
                f"of type {type(seed).__name__}."
            )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = False

    def draw(self, batch_size, tensor):
        """Returns `(weight, plan)` for a batch like `tensor`."""
        raise NotImplementedError

    def mix_tensor(self, tensor, partner, plan):
        """Mixes one input tensor with its `partner` rows as `plan` (from
        `draw`) says; subclasses define it."""
        raise NotImplementedError

    def mix(self, inputs) -> Tuple[Any, Any, Any]:
        """Mixes a batch. Returns `(mixed_inputs, partner, weight)`.

        `partner[i]` is the index of the example mixed into example `i`, and
        `weight[i]` the share of example `i` itself (float32, in [0, 1]).
        Every floating-point tensor of a nested input is mixed with the same
        partners and weights; integer inputs (token ids) cannot be mixed.
        """
        tensors = keras.tree.flatten(inputs)
        for index, tensor in enumerate(tensors):
            dtype = keras.backend.standardize_dtype(tensor.dtype)
            if "float" not in dtype:
                where = "inputs" if len(tensors) == 1 else f"input {index}"
                raise TypeError(
                    f"{type(self).__name__} mixes floating-point inputs; "
                    f"{where} has dtype {dtype}. Cast images to float32 "
                    "first (token ids cannot be mixed: leave out the mixer)."
                )
        reference = tensors[0]
        batch_size = ops.shape(reference)[0]
        partner = keras.random.shuffle(ops.arange(batch_size), seed=self.seed_generator)
        weight, plan = self.draw(batch_size, reference)
        mixed = keras.tree.map_structure(
            lambda tensor: self.mix_tensor(tensor, partner, plan), inputs
        )
        weight = ops.cast(weight, "float32")
        return mixed, partner, weight

    def mix_labeled(self, inputs, labels) -> Tuple[Any, Any]:
        """Mixes inputs and one-hot `labels` alike, for a student trained alone.

        Use it in a `tf.data` pipeline of one-hot labels (`keras.ops.one_hot`)
        with a categorical cross-entropy: the baseline that sees the same
        mixed inputs as a distilled student.

        Example:

        >>> import numpy as np
        >>> x = np.random.rand(8, 5).astype("float32")
        >>> y = keras.ops.one_hot(np.arange(8) % 2, 2)
        >>> mixed_x, mixed_y = MixUp(seed=0).mix_labeled(x, y)
        >>> tuple(mixed_x.shape), tuple(mixed_y.shape)
        ((8, 5), (8, 2))
        """
        mixed, partner, weight = self.mix(inputs)
        labels = ops.cast(labels, "float32")
        column = ops.expand_dims(weight, -1)
        return mixed, column * labels + (1.0 - column) * ops.take(labels, partner, axis=0)

    def call(self, inputs, training: bool = True):
        if not training:
            return inputs
        return self.mix(inputs)[0]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config["seed"] = self.seed
        return config


@keras.saving.register_keras_serializable(package="keras_kd")
class MixUp(InputMixer):
    """MixUp (Zhang et al. 2018) on inputs of any rank.

    Each example becomes `w * x_i + (1 - w) * x_j`, with `j` a random partner
    from the batch and `w ~ Beta(alpha, alpha)` drawn per example. The
    default `alpha=1` draws `w` uniformly from [0, 1], as in Beyer et al.
    (2022)'s function matching; the classic label-smoothing regime of MixUp
    uses `alpha` around 0.2.

    Args:
        alpha: Concentration of the Beta distribution, > 0. Defaults to 1.
        seed: Seed of the random draws.
        name: The layer's name.

    Example:

    >>> import numpy as np
    >>> mixer = MixUp(alpha=1.0, seed=0)
    >>> x = np.stack([np.zeros(3), np.ones(3)]).astype("float32")
    >>> mixed, partner, weight = mixer.mix(x)
    >>> bool(np.allclose(mixed[0], weight[0] * x[0] + (1 - weight[0]) * x[int(partner[0])]))
    True
    """

    def __init__(self, alpha: float = 1.0, seed: Optional[int] = None, name: Optional[str] = None,
                 **kwargs):
        super().__init__(seed=seed, name=name, **kwargs)
        self.alpha = _validate_positive(alpha, "alpha")

    def draw(self, batch_size, tensor):
        weight = sample_beta((batch_size,), self.alpha, self.seed_generator)
        return weight, weight

    def mix_tensor(self, tensor, partner, plan):
        w = ops.cast(_broadcast_weight(plan, tensor), tensor.dtype)
        return w * tensor + (1 - w) * ops.take(tensor, partner, axis=0)

    def get_config(self) -> dict:
        config = super().get_config()
        config["alpha"] = self.alpha
        return config


@keras.saving.register_keras_serializable(package="keras_kd")
class CutMix(InputMixer):
    """CutMix (Yun et al. 2019) for image batches `(batch, height, width[, channels])`.

    A random box of each image is replaced by the same box of its partner.
    The box covers a fraction `1 - lambda` of the image, `lambda ~
    Beta(alpha, alpha)`, centred uniformly at random and clipped to the
    image; the weight of the original example is the fraction of its pixels
    that remain. Channels-last layout.

    Args:
        alpha: Concentration of the Beta distribution, > 0. Defaults to 1.
        seed: Seed of the random draws.
        name: The layer's name.

    Example:

    >>> import numpy as np
    >>> images = np.stack([np.zeros((8, 8, 1)), np.ones((8, 8, 1))]).astype("float32")
    >>> mixed, partner, weight = CutMix(seed=1).mix(images)
    >>> kept = float(np.mean(mixed[0] == images[0]))   # share of pixels kept
    >>> bool(partner[0] == 0 or abs(kept - float(weight[0])) < 1e-6)
    True
    """

    def __init__(self, alpha: float = 1.0, seed: Optional[int] = None, name: Optional[str] = None,
                 **kwargs):
        super().__init__(seed=seed, name=name, **kwargs)
        self.alpha = _validate_positive(alpha, "alpha")

    def _box_mask(self, batch_size, tensor):
        if len(tensor.shape) not in (3, 4):
            raise ValueError(
                "CutMix cuts boxes out of image batches of shape (batch, height, "
                "width) or (batch, height, width, channels). Received inputs of "
                f"shape {tuple(tensor.shape)}; use MixUp for other inputs."
            )
        height, width = tensor.shape[1], tensor.shape[2]
        if height is None or width is None:
            height, width = ops.shape(tensor)[1], ops.shape(tensor)[2]
        height_f = ops.cast(height, "float32")
        width_f = ops.cast(width, "float32")
        lam = sample_beta((batch_size,), self.alpha, self.seed_generator)
        cut = ops.sqrt(1.0 - lam)
        centre_y = keras.random.uniform((batch_size,), seed=self.seed_generator) * height_f
        centre_x = keras.random.uniform((batch_size,), seed=self.seed_generator) * width_f
        half_h, half_w = cut * height_f / 2.0, cut * width_f / 2.0
        top = ops.clip(ops.round(centre_y - half_h), 0.0, height_f)
        bottom = ops.clip(ops.round(centre_y + half_h), 0.0, height_f)
        left = ops.clip(ops.round(centre_x - half_w), 0.0, width_f)
        right = ops.clip(ops.round(centre_x + half_w), 0.0, width_f)
        rows = ops.cast(ops.arange(height), "float32")[None, :, None]
        cols = ops.cast(ops.arange(width), "float32")[None, None, :]
        inside = (
            (rows >= top[:, None, None]) & (rows < bottom[:, None, None])
            & (cols >= left[:, None, None]) & (cols < right[:, None, None])
        )
        return ops.cast(inside, "float32")  # (batch, height, width)

    def draw(self, batch_size, tensor):
        # One box per example, shared by every image input.
        mask = self._box_mask(batch_size, tensor)
        return 1.0 - ops.mean(mask, axis=(1, 2)), mask

    def mix_tensor(self, tensor, partner, plan):
        mask = plan if len(tensor.shape) == 3 else plan[..., None]
        mask = ops.cast(mask, tensor.dtype)
        return (1 - mask) * tensor + mask * ops.take(tensor, partner, axis=0)

    def get_config(self) -> dict:
        config = super().get_config()
        config["alpha"] = self.alpha
        return config


def _stages(augmentation) -> Sequence:
    if isinstance(augmentation, keras.Sequential):
        return list(augmentation.layers)
    return [augmentation]


def validate_augmentation(augmentation, argument: str = "augmentation") -> None:
    """Raises unless `augmentation` is a layer, a `Sequential` or a callable."""
    if augmentation is None:
        return
    if not callable(augmentation):
        raise TypeError(
            f"`{argument}` must be a Keras layer, a `keras.Sequential` of layers "
            f"or a callable that maps a batch of inputs to a batch of inputs. "
            f"Received: {argument}={augmentation!r} of type {type(augmentation).__name__}."
        )
    mixers = [stage for stage in _stages(augmentation) if isinstance(stage, InputMixer)]
    if len(mixers) > 1:
        raise ValueError(
            f"`{argument}` may hold at most one mixer (MixUp or CutMix), since "
            "the hard-label loss follows one partner per example. Received "
            f"{len(mixers)}: {[m.name for m in mixers]}."
        )


def apply_augmentation(augmentation, inputs) -> Tuple[Any, Optional[Tuple[Any, Any]]]:
    """Applies a training augmentation to a batch of inputs.

    Returns `(augmented_inputs, mixing)`, where `mixing` is `None`, or
    `(partner, weight)` when a mixer took part (see `InputMixer.mix`).
    Keras layers are called with `training=True`.

    Example:

    >>> import numpy as np
    >>> augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=0),
    ...                                  MixUp(seed=0)])
    >>> images = np.random.rand(4, 6, 6, 1).astype("float32")
    >>> mixed, (partner, weight) = apply_augmentation(augmentation, images)
    >>> tuple(mixed.shape), tuple(weight.shape)
    ((4, 6, 6, 1), (4,))
    """
    mixing = None
    for stage in _stages(augmentation):
        if isinstance(stage, InputMixer):
            inputs, partner, weight = stage.mix(inputs)
            mixing = (partner, weight)
        elif isinstance(stage, keras.layers.Layer):
            inputs = stage(inputs, training=True)
        else:
            inputs = stage(inputs)
    return inputs, mixing

"""The distiller's checks on the host, before any step runs.

Arrays and datasets given to `fit`, `evaluate`, `train_on_batch` and
`test_on_batch` are checked once, on the host, before any weight changes;
what only a step can see is counted there and raised after it by
`checks.HealthCheck`, which these methods add to the callbacks (in-graph
asserts vanish under XLA).
"""

from typing import Optional

import keras
import tensorflow as tf
from keras import ops

from keras_kd.src.distiller import checks, step_inputs
from keras_kd.src.utils import model_outputs
from keras_kd.src.utils.keys import TEACHER_LOGITS_KEY


class HostChecks:
    """`Distiller`'s host-side checks and the `fit`/`evaluate` entry points.

    A mixin, as Keras's `Trainer` is one of `keras.Model`: it reads the
    distiller's `student`, `terms`, `augmentation`, `distribute_strategy`
    and `_step_health`, and calls `keras.Model`'s methods through `super()`.
    """

    def fit(self, x=None, y=None, batch_size=None, *args, **kwargs):
        self._check_global_batch_size(x, batch_size, "batch_size")
        self._check_augmentation_source(x)
        # Arrays are checked here, on the host, once, before any weight
        # changes; what only the step sees is counted there and raised by
        # the HealthCheck callback (in-graph asserts vanish under XLA).
        self._check_training_data(x, y, kwargs.get("sample_weight"), kwargs.get("class_weight"))
        validation_data = kwargs.get("validation_data")
        if isinstance(validation_data, (tuple, list)) and len(validation_data) > 1:
            self._check_label_array(validation_data[1], "validation_data")
            if len(validation_data) > 2:
                checks.check_sample_weight_array(validation_data[2], "validation_data")
        elif isinstance(validation_data, tf.data.Dataset):
            checks.check_dataset_labels(
                validation_data, self._student_classes(), "validation_data",
                need_labels=True, output_rank=self._student_output_rank(),
            )
        args, kwargs = self._add_health_check(args, kwargs, position=2)
        return super().fit(x, y, batch_size, *args, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, *args, **kwargs):
        self._check_global_batch_size(x, batch_size, "batch_size")
        if not kwargs.get("_use_cached_eval_dataset"):
            # (fit's validation data was checked by fit.)
            self._check_evaluation_data(x, y, kwargs.get("sample_weight"))
        args, kwargs = self._add_health_check(args, kwargs, position=3)
        return super().evaluate(x, y, batch_size, *args, **kwargs)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        self._require_compiled()
        self._check_training_data(x, y, sample_weight, class_weight)
        self._step_health.reset_state()
        logs = super().train_on_batch(
            x, y, sample_weight=sample_weight, class_weight=class_weight, return_dict=return_dict
        )
        checks.HealthCheck(self).check("this batch")
        return logs

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._require_compiled()
        self._check_evaluation_data(x, y, sample_weight)
        self._step_health.reset_state()
        logs = super().test_on_batch(x, y, sample_weight=sample_weight, return_dict=return_dict)
        checks.HealthCheck(self).check("this batch")
        return logs

    def _check_global_batch_size(self, x, batch_size, argument: str) -> None:
        """Every replica needs examples: the global batch is split among them."""
        replicas = self.distribute_strategy.num_replicas_in_sync
        size = step_inputs.static_batch_size(x, batch_size)
        if replicas > 1 and size is not None and size < replicas:
            source = "the dataset's batches" if isinstance(x, tf.data.Dataset) else argument
            raise ValueError(
                f"The global batch size must be at least the number of "
                f"replicas ({replicas}), since each replica trains on its "
                f"share of the batch. Received: {source}={size}. Use a batch "
                f"size that is a multiple of {replicas}."
            )

    def _check_augmentation_source(self, x) -> None:
        """Cached teacher logits cannot follow a fresh augmentation."""
        if self.augmentation is None:
            return
        spec = x.element_spec if isinstance(x, tf.data.Dataset) else x
        if isinstance(spec, (tuple, list)) and spec:
            spec = spec[0]
        if isinstance(spec, dict) and TEACHER_LOGITS_KEY in spec:
            raise ValueError(step_inputs.AUGMENTED_CACHE_MESSAGE.format(self.augmentation))

    def _check_training_data(self, x, y, sample_weight, class_weight) -> None:
        if isinstance(x, tf.data.Dataset):
            checks.check_dataset_labels(
                x, self._student_classes(), "x", need_labels=False,
                output_rank=self._student_output_rank(),
            )
        kind = self._check_label_array(y, "y")
        checks.check_sample_weight_array(sample_weight)
        checks.check_class_weight(class_weight)
        if self.terms and checks.all_unlabeled(y, kind) and not self._trains_without_labels():
            raise ValueError(
                "Nothing would be trained: every example in `y` is unlabeled, "
                "and every term with a positive weight needs labels. With "
                f"alpha={self.alpha:g} the soft-target term has weight "
                "`1 - alpha` = 0. Use alpha < 1 to learn from the teacher, or "
                "give labels."
            )

    def _check_evaluation_data(self, x, y, sample_weight) -> None:
        """Host checks of `evaluate`'s data: it scores against labels."""
        if isinstance(x, tf.data.Dataset):
            checks.check_dataset_labels(
                x, self._student_classes(), "x", need_labels=True,
                output_rank=self._student_output_rank(),
            )
        elif y is None and not isinstance(x, (tf.data.Dataset, keras.utils.PyDataset)) and (
            checks.as_label_array(x) is not None or isinstance(x, dict)
        ):
            raise ValueError(
                "`evaluate` scores the student against labels, but none were "
                "given. Received: y=None. Pass `evaluate(x, y)` (the "
                "distillation terms need no labels, but evaluation does)."
            )
        self._check_label_array(y, "y")
        checks.check_sample_weight_array(sample_weight)

    def _trains_without_labels(self) -> bool:
        """True when some term with a positive weight needs no labels."""
        return any(
            not term.requires_labels and float(ops.convert_to_numpy(term.loss_weight)) > 0
            for term in self.terms
        )

    def _check_label_array(self, labels, argument: str) -> Optional[str]:
        return checks.check_label_array(
            labels, self._student_classes(), argument, self._student_output_rank()
        )

    def _student_classes(self) -> Optional[int]:
        return model_outputs.output_classes(self.student)

    def _student_output_rank(self) -> int:
        """Rank of the student's outputs: 2 for a classifier, 3 for an LM."""
        try:
            shape = self.student.output_shape
        except (AttributeError, ValueError, RuntimeError):
            return 2
        return len(shape) if isinstance(shape, tuple) and len(shape) >= 2 else 2

    def _add_health_check(self, args: tuple, kwargs: dict, position: int):
        """Adds the HealthCheck to `callbacks`, given by keyword or at
        `args[position]` (after `x, y, batch_size`)."""
        if len(args) > position:
            args = list(args)
            args[position] = self._with_health_check(args[position])
            return tuple(args), kwargs
        kwargs["callbacks"] = self._with_health_check(kwargs.get("callbacks"))
        return args, kwargs

    def _with_health_check(self, callbacks):
        """`callbacks` with a `checks.HealthCheck` first, once."""
        if isinstance(callbacks, keras.callbacks.CallbackList):
            if not any(isinstance(c, checks.HealthCheck) for c in callbacks.callbacks):
                check = checks.HealthCheck(self)
                check.set_model(self)
                callbacks.callbacks.insert(0, check)
            return callbacks
        callbacks = list(callbacks or [])
        if not any(isinstance(c, checks.HealthCheck) for c in callbacks):
            callbacks.insert(0, checks.HealthCheck(self))
        return callbacks

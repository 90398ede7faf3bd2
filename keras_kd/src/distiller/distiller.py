"""The `Distiller`: a `keras.Model` that trains a student from a teacher.

The class is the orchestration: `__init__` and `compile` check their
arguments in `init_arguments` and `compile_arguments`; a step takes its
inputs apart in `step_inputs` and reduces the terms in `term_reduction`
(pure functions of tensors), and `checks` refuses bad data.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import keras
import tensorflow as tf
from keras import ops

from keras_kd.src import keras_compat
from keras_kd.src.augment import augment as augment_lib
from keras_kd.src.distiller import (
    accumulation,
    checks,
    compile_arguments,
    init_arguments,
)
from keras_kd.src.distiller import positions as positions_lib
from keras_kd.src.distiller import step_inputs, term_reduction
from keras_kd.src.distiller.host_checks import HostChecks
from keras_kd.src.distiller.metrics import LabelMaskedMetrics
from keras_kd.src.models import causal_lm as causal_lm_lib
from keras_kd.src.terms import features as features_lib
from keras_kd.src.terms import keras_distillation as keras_distillation_lib
from keras_kd.src.terms import terms as terms_lib
from keras_kd.src.utils.keys import INPUTS_KEY, TEACHER_LOGITS_KEY

# `compile()`'s defaults, chosen on validation splits of four tasks by
# `benchmarks/defaults.py` (see `benchmarks/results/defaults.md`).
DEFAULT_ALPHA = 0.5
DEFAULT_TEMPERATURE = 1.0


class _Untracked:
    """Holds values that Keras must neither track nor save.

    A plain object: Keras tracks the layers, variables and metrics it finds
    in a model's attributes (and in lists and dicts of them). The feature
    extractors share the models' weights and must not be saved or counted a
    second time; the step's health counts are not logged; the accumulated
    gradients are training state, not weights.
    """

    def __init__(self, **values):
        self.__dict__.update(values)


def _feature_extractors(student=None, student_names=(), teacher=None, teacher_names=()):
    """The models that return the named features of a compiled distiller."""
    return _Untracked(student=student, student_names=tuple(student_names),
                      teacher=teacher, teacher_names=tuple(teacher_names))


def _accumulation(steps: Optional[int] = None):
    """Exact gradient accumulation (`keras_kd.accumulation`): `steps` is
    `None` when every batch is an optimizer step; the accumulator is built
    with the optimizer."""
    return _Untracked(steps=steps, accumulator=None)


@keras.saving.register_keras_serializable(package="keras_kd")
class Distiller(HostChecks, keras.Model):
    """Trains a student model from one or several frozen teachers.

    The training loss is a weighted sum of distillation terms. `compile()`
    builds the classic pair: the student's own loss on the true labels with
    weight `alpha`, and Hinton's soft-target loss
    `T**2 * KL(softmax(t/T) || softmax(s/T))` with weight `1 - alpha`. More
    terms (hints, attention transfer, ...) go in `distillation_terms`.

    Every term is averaged over the *global* batch, so training gives the
    same result on one device and under any `tf.distribute` strategy. Calling
    the distiller, `predict` and `evaluate` use the student alone at `T = 1`;
    `evaluate` reports the student's own loss.

    Code written for `keras.distillation.Distiller` runs unchanged:
    `Distiller(teacher=..., student=..., distillation_losses=...,
    distillation_loss_weights=..., student_loss_weight=...)` and
    `compile(optimizer, loss=..., metrics=...)`. Each
    `keras.distillation.DistillationLoss` becomes a keras_kd term (see
    `keras_kd.keras_distillation`); the loss is then `student_loss_weight *
    loss + (1 - student_loss_weight) * sum(w_i * distillation_losses[i])`.
    Where the math differs from keras.distillation: `LogitsDistillation`'s KL
    is keras_kd's `T**2 * KL` from `log_softmax` in float32 (Keras clips
    probabilities, and its default `"kl_divergence"` string is applied to the
    tempered logits themselves); every term is averaged over the global
    batch; `sample_weight` and unlabeled examples (label `-1`) are honoured
    (Keras ignores them); the strings `"sparse_categorical_crossentropy"` and
    `"categorical_crossentropy"` given as `loss` mean the from-logits losses.
    keras_kd terms mix in: `compile(..., distillation_terms=[HintLoss(...)])`.

    Positional orders: keras_kd's is `Distiller(student, teacher)`,
    keras.distillation's `Distiller(teacher, student, distillation_losses)`.
    keras.distillation's order is used when `distillation_losses=` is given
    or the third positional argument is a `DistillationLoss` (or a list of
    them); keras_kd's otherwise. A positional call whose model in the
    student's place has at least twice the parameters of the one in the
    teacher's place (and 10,000 more) is refused as a likely swap; keyword
    calls never are.

    Args:
        *args: The models (and more) by position, in one of the two orders
            above.
        student: The `keras.Model` to train. It must output logits.
        teacher: A trained `keras.Model`, a list of them (their soft targets
            are averaged), or `None` when every batch brings precomputed
            teacher logits under `inputs[TEACHER_LOGITS_KEY]`.
        distillation_losses: keras.distillation's losses: one
            `keras.distillation.DistillationLoss` (`LogitsDistillation`,
            `FeatureDistillation`, a subclass) or a list of them. With them,
            `compile` takes `loss=` and refuses `alpha`, `temperature` and
            `distillation_loss_fn`, which these govern.
        distillation_loss_weights: One weight per distillation loss.
            Defaults to `1.0` each.
        student_loss_weight: Weight of the student loss, in `[0, 1]`.
            Defaults to `0.5` with `distillation_losses` (as in Keras);
            without them it acts as `compile`'s `alpha` (give one, not both).
        teacher_weights: One weight per teacher. Defaults to equal weights.
        teacher_outputs: `"logits"` (default) or `"probabilities"` for
            teachers whose last layer is a softmax.
        augmentation: A Keras layer (e.g. `keras_kd.src.augment.augment.MixUp()`), a
            `keras.Sequential` of layers or a callable, applied to the
            inputs of every *training* batch inside the step, once, so that
            the teacher and the student see the identical view ("consistent
            teaching", Beyer et al. 2022). Never applied by `evaluate`,
            `predict` or calling the distiller. With a mixer
            (`keras_kd.src.augment.augment.MixUp`, `CutMix`) the hard-label loss of
            example `i` becomes `w_i * loss(y_i) + (1 - w_i) * loss(y_j)` for
            its partner `j`, and the training metrics score the label with
            the larger weight. Cannot be combined with cached teacher logits,
            which were computed on other views.
        name: The model's name.

    The teachers are frozen: the distiller sets `teacher.trainable = False`
    on the models passed in (this also keeps their BatchNormalization layers
    in inference mode); set it back to train a teacher again. A teacher may
    not share weights with the student, nor be the student.

    Outputs of any rank: a student (and teachers) may output `(batch, ...,
    classes)`, e.g. `(batch, sequence, vocabulary)` for a causal language
    model. Labels are then one class index per position (`-1`: no label,
    e.g. prompt tokens, which get the soft-target loss only), and every term
    is the mean over the *real* positions of the global batch: each position
    weighs its `sample_weight` (per position, as keras-hub's
    `CausalLMPreprocessor` yields it, or per example) times the inputs'
    `padding_mask` when the inputs are a dict that has one, and the Keras
    mask of the student's outputs (`Embedding(mask_zero=True)`)
    (`keras_kd.positions`). Cached teacher logits may be dense or in top-k
    form (`{"values", "indices", "tail"}`, one row per position). Gradient
    accumulation (`compile(gradient_accumulation_steps=k)`, or an optimizer
    created with it) is exact: `k` micro-batches give the step of one
    `k`-times-larger batch even when they hold different numbers of real
    tokens (`keras_kd.accumulation`).

    Bad inputs are refused, never trained on silently: label and sample
    weight arrays are checked before training; in a step (a `tf.data`
    pipeline, where in-graph asserts would vanish under XLA), a batch with
    invalid labels or weights, or with NaN/inf teacher outputs, is not
    applied to the weights, and `fit`/`evaluate` raise after it, naming the
    batch.

    Example:

    >>> import numpy as np, keras
    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> distiller = Distiller(student=student, teacher=teacher)
    >>> distiller.compile(optimizer="adam", metrics=["accuracy"],
    ...                   alpha=0.1, temperature=4.0)
    >>> x = np.random.rand(32, 4).astype("float32")
    >>> y = np.random.randint(0, 3, size=32)
    >>> history = distiller.fit(x, y, epochs=1, verbose=0)
    >>> sorted(history.history)
    ['accuracy', 'distillation_loss', 'loss', 'student_loss']
    """

    def __init__(
        self,
        *args,
        student: Optional[keras.Model] = None,
        teacher: Union[keras.Model, Sequence[keras.Model], None] = None,
        distillation_losses=None,
        distillation_loss_weights: Optional[Sequence[float]] = None,
        student_loss_weight: Optional[float] = None,
        teacher_weights: Optional[Sequence[float]] = None,
        teacher_outputs: str = "logits",
        augmentation=None,
        name: str = "distiller",
        **kwargs,
    ):
        values, order = init_arguments.resolve_arguments(args, dict(
            student=student, teacher=teacher, distillation_losses=distillation_losses,
            distillation_loss_weights=distillation_loss_weights,
            student_loss_weight=student_loss_weight, teacher_weights=teacher_weights,
            teacher_outputs=teacher_outputs, augmentation=augmentation, name=name,
        ))
        student, teacher = values["student"], values["teacher"]
        teacher_weights, teacher_outputs = values["teacher_weights"], values["teacher_outputs"]
        augmentation = values["augmentation"]
        if student is None:
            raise TypeError(
                "`Distiller` needs the `student` model: `Distiller(student=..., "
                "teacher=...)`, or keras.distillation's `Distiller(teacher=..., "
                "student=..., distillation_losses=...)`. Received: student=None."
            )
        super().__init__(name=values["name"], **kwargs)
        init_arguments.check_keras_model(student, "student")
        # keras-hub pairs: a Backbone instead of a CausalLM, or two vocabularies.
        causal_lm_lib.check_causal_lm_pair(student, teacher)
        init_arguments.check_positional_swap(args, order, student, teacher)
        keras_losses, keras_weights, student_loss_weight = init_arguments.keras_style_losses(
            values["distillation_losses"], values["distillation_loss_weights"],
            values["student_loss_weight"],
        )
        augment_lib.validate_augmentation(augmentation)
        teachers = init_arguments.teacher_list(teacher)
        init_arguments.check_models(student, teachers, teacher_outputs, teacher_weights)
        # Kept as given (unnormalized) so that get_config round-trips; with
        # teacher=None they apply to the cached logits of several teachers.
        self.teacher_weights = (
            None if teacher_weights is None else [float(w) for w in teacher_weights]
        )
        self.teacher_outputs = teacher_outputs
        # A mismatch would fail deep inside the optimizer or train silently
        # on one replica; say so here instead.
        strategy = keras_compat.creation_strategy(self)
        init_arguments.check_same_strategy(student, "student", strategy)
        for model in teachers:
            init_arguments.check_same_strategy(model, "teacher", strategy)
        init_arguments.check_outputs_by_probe(student, teachers, teacher_outputs)
        if keras_losses:
            # Each loss's own checks, on the models and their symbolic
            # outputs: a rejection is raised here, before any training.
            keras_distillation_lib.validate_against_models(keras_losses, teachers, student)
        # Last, after every check: a refused distiller leaves the user's
        # models as they were. Freezing also keeps BatchNormalization in
        # inference mode.
        for model in teachers:
            model.trainable = False
        self.student = student
        self.teachers = teachers
        self.augmentation = augmentation
        #: keras.distillation's configuration (`None`/`[]` for keras_kd's own).
        self.student_loss_weight = student_loss_weight
        self.distillation_losses = keras_losses
        self.distillation_loss_weights = keras_weights
        self.terms = []
        self._term_trackers = []
        self._feature_extractors = _feature_extractors()
        self._health_holder = _Untracked(health=None)
        self._accumulator_holder = _accumulation()
        # The distiller owns no weights of its own: it is built when its
        # models are (always, for models made with `keras.Input`).
        if all(model.built for model in (student, *teachers)):
            self.built = True

    def build(self, input_shape=None) -> None:
        """Builds the student (and teachers) for inputs of `input_shape`."""
        if isinstance(input_shape, dict) and TEACHER_LOGITS_KEY in input_shape:
            input_shape = input_shape.get(INPUTS_KEY)
        for model in (self.student, *self.teachers):
            if not model.built and input_shape is not None:
                model.build(input_shape)
        self.built = True

    @property
    def teacher(self):
        """The teacher, the list of teachers, or `None`."""
        if not self.teachers:
            return None
        return self.teachers[0] if len(self.teachers) == 1 else list(self.teachers)

    def call(self, inputs, training: bool = False):
        student_inputs, _ = step_inputs.split_inputs(inputs)
        return self.student(student_inputs, training=training)

    # ------------------------------------------------------------------ compile

    def compile(
        self,
        optimizer="adam",
        *args,
        loss=None,
        metrics=None,
        student_loss_fn=None,
        distillation_loss_fn=None,
        alpha: Optional[float] = None,
        temperature: Optional[float] = None,
        distillation_terms: Optional[Sequence[terms_lib.DistillationTerm]] = None,
        teacher_reduction: str = "mean_probabilities",
        divergence: str = "forward_kl",
        jsd_beta: float = 0.5,
        chunk_size: Union[int, str, None] = "auto",
        gradient_accumulation_steps: Optional[int] = None,
        weighted_metrics=None,
        run_eagerly: bool = False,
        steps_per_execution: int = 1,
        jit_compile="auto",
        auto_scale_loss: bool = True,
    ) -> None:
        """Configures the distillation loss and the optimizer.

        keras_kd's own form: the loss is `alpha * student_loss + (1 - alpha)
        * distillation_loss` plus `sum(term.loss_weight * term)` for each
        extra term.

        keras.distillation's form, for a distiller created with
        `distillation_losses=`: `compile(optimizer, loss, metrics)`; the loss
        is `student_loss_weight * loss + (1 - student_loss_weight) *
        sum(w_i * distillation_losses[i])` plus the extra terms. Its
        `student_loss_weight` and each `LogitsDistillation`'s temperature
        govern, so `alpha`, `temperature` and `distillation_loss_fn` are
        refused there.

        Args:
            optimizer: Optimizer name or instance. Defaults to `"adam"`.
            *args: At most `loss, metrics`, as in `keras.Model.compile` and
                keras.distillation; every other argument is keyword-only.
            loss: The student's loss on the true labels (keras.distillation's
                name for `student_loss_fn`). Students output logits, so the
                strings `"sparse_categorical_crossentropy"` and
                `"categorical_crossentropy"` mean the from-logits losses.
            metrics: Metrics computed on the student's logits and the labels.
            student_loss_fn: Loss on the true labels. `None` (default) uses
                sparse or one-hot categorical cross-entropy from logits.
            distillation_loss_fn: `None` (default) computes the KL divergence
                from logits in float32. A loss on probabilities (e.g.
                `keras.losses.KLDivergence()`) is called as in the keras.io
                example: `fn(softmax(t/T), softmax(s/T)) * T**2`.
            alpha: Weight of the student loss, in `[0, 1]`. Defaults to
                `0.5` (or the distiller's `student_loss_weight`, if given;
                not both).
            temperature: Softmax temperature `T > 0`. Defaults to `1.0`.
                The defaults were chosen on the validation splits of four
                tasks (`benchmarks/results/defaults.md`): the only settings
                never worse than the student alone there had `T = 1`; the
                usual `alpha=0.1, T=4` was worse on all four. Higher
                temperatures can still pay for a student close to its
                teacher's capacity: search them with `keras_kd.tune`.
            distillation_terms: Extra `DistillationTerm`s, with their own
                weights, added to the terms above (also to keras.distillation
                losses, e.g. a `keras_kd.HintLoss` next to a
                `LogitsDistillation`).
            teacher_reduction: How several teachers are combined:
                `"mean_probabilities"` (default) or `"mean_kl"`.
            divergence: The soft-target divergence: `"forward_kl"`
                (default, Hinton's), `"reverse_kl"` (MiniLLM), `"jsd"` (GKD's
                generalized JSD, with `jsd_beta`) or `"tvd"`; see
                `keras_kd.divergences`. Any of them works for classifiers
                and sequence models.
            jsd_beta: The teacher's weight in the JSD's mixture, in `(0, 1)`.
                Defaults to `0.5`.
            chunk_size: Rows (tokens) per chunk of the soft-target loss, so
                that a large vocabulary does not hold several float32 copies
                of tokens x vocabulary at once. `"auto"` (default) chunks
                only batches of more than about 4M logits; `None` never.
            gradient_accumulation_steps: Micro-batches per optimizer step,
                an integer `>= 2`, or `None` (default: one step per batch,
                unless the optimizer was created with
                `gradient_accumulation_steps`, which the distiller then takes
                over). Exact: the step equals one batch `k` times larger even
                when the micro-batches hold different numbers of real rows
                (tokens), since the distiller sums gradients and counts and
                divides once (`keras_kd.accumulation`); Keras's optimizer
                averages per-batch means instead. The optimizer's
                `iterations` counts optimizer steps.
            weighted_metrics: As in `keras.Model.compile`.
            run_eagerly: As in `keras.Model.compile`.
            steps_per_execution: As in `keras.Model.compile`.
            jit_compile: As in `keras.Model.compile`.
            auto_scale_loss: As in `keras.Model.compile`.
        """
        keras_style = bool(self.distillation_losses)
        settings = compile_arguments.loss_settings(
            args,
            dict(loss=loss, metrics=metrics, student_loss_fn=student_loss_fn,
                 distillation_loss_fn=distillation_loss_fn, alpha=alpha,
                 temperature=temperature, distillation_terms=distillation_terms),
            keras_style=keras_style, student_loss_weight=self.student_loss_weight,
            divergence=divergence, jsd_beta=jsd_beta, chunk_size=chunk_size,
            default_alpha=DEFAULT_ALPHA, default_temperature=DEFAULT_TEMPERATURE,
        )
        super().compile(
            optimizer=optimizer,
            metrics=settings.metrics,
            weighted_metrics=weighted_metrics,
            run_eagerly=run_eagerly,
            steps_per_execution=steps_per_execution,
            jit_compile=jit_compile,
            auto_scale_loss=auto_scale_loss,
        )
        self._accumulator_holder = _accumulation(
            compile_arguments.take_over_accumulation(self.optimizer, gradient_accumulation_steps)
        )
        compiled = keras_compat.compile_metrics(self)
        if compiled is not None:
            keras_compat.set_compile_metrics(self, LabelMaskedMetrics(
                settings.metrics, weighted_metrics, output_names=compiled.output_names
            ))
        self.jit_compile = compile_arguments.jit_compile_for(
            self.distribute_strategy, self.jit_compile, jit_compile
        )
        terms = compile_arguments.build_terms(
            settings.student_loss_fn, settings.alpha, settings.extra_terms,
            distillation_losses=self.distillation_losses if keras_style else None,
            distillation_loss_weights=self.distillation_loss_weights,
            teacher_weights=self.teacher_weights, teacher_reduction=teacher_reduction,
            temperature=settings.temperature, distillation_loss_fn=settings.distillation_loss_fn,
            divergence=settings.divergence, jsd_beta=settings.jsd_beta,
            chunk_size=settings.chunk_size,
        )
        # clear() untracks the terms of an earlier compile, so that saving
        # and `trainable_weights` only see the current ones.
        self.terms.clear()
        self.terms.extend(terms)
        self._build_feature_extractors()
        self._term_trackers.clear()
        self._term_trackers.extend(keras.metrics.Mean(name=term.name) for term in self.terms)
        # Created here, under the caller's strategy scope, like the trackers.
        self._health_holder = _Untracked(health=checks.StepHealth())
        keras_compat.set_compile_config(self, compile_arguments.compile_config(
            settings, keras_style=keras_style, student_loss_weight=self.student_loss_weight,
            optimizer=self.optimizer, teacher_reduction=teacher_reduction,
            weighted_metrics=weighted_metrics, run_eagerly=run_eagerly,
            steps_per_execution=steps_per_execution, jit_compile=self.jit_compile,
            gradient_accumulation_steps=self._accumulator_holder.steps,
        ))

    @property
    def alpha(self) -> float:
        """Weight of the student loss; `1 - alpha` weighs the soft targets."""
        return float(ops.convert_to_numpy(self._require_compiled().terms[0].loss_weight))

    @alpha.setter
    def alpha(self, value: float) -> None:
        value = terms_lib._validate_loss_weight(value, "alpha")
        if value > 1.0:
            raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={value!r}.")
        self._require_compiled()
        self.terms[0].loss_weight = value
        if self.distillation_losses:
            # keras.distillation's weights: (1 - alpha) * w_i for loss i.
            self.student_loss_weight = value
            for term, weight in zip(self.terms[1:], self.distillation_loss_weights):
                term.loss_weight = (1.0 - value) * weight
        else:
            self.terms[1].loss_weight = 1.0 - value

    def _tempered_term(self):
        """The soft-target term whose temperature `temperature` reads."""
        self._require_compiled()
        if not self.distillation_losses:
            return self.terms[1]
        for term in self.terms[1:]:
            if isinstance(term, keras_distillation_lib.KerasLogitsDistillation):
                return term
        raise AttributeError(
            "This distiller has no `LogitsDistillation`, so no temperature. "
            f"Its distillation_losses: {self.distillation_losses!r}."
        )

    @property
    def temperature(self) -> float:
        """The softmax temperature of the soft-target term (with
        keras.distillation losses: of the first `LogitsDistillation`)."""
        return float(ops.convert_to_numpy(self._tempered_term().temperature))

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._tempered_term().temperature = value

    @property
    def _step_health(self):
        return self._health_holder.health

    def load_weights(self, filepath, skip_mismatch: bool = False, **kwargs) -> None:
        """Loads the weights, keeping the current `compile()`'s settings.

        The terms' `loss_weight` and `temperature` are variables, saved with
        the weights; restoring them would silently replace the `alpha` and
        `temperature` of a newer `compile()`. They are kept as compiled
        (`keras.saving.load_model` restores them, with the compile settings,
        to resume a run exactly).
        """
        kept = [
            (variable, ops.convert_to_numpy(variable))
            for term in self.terms
            for variable in (getattr(term, "_loss_weight", None), getattr(term, "_temperature", None))
            if variable is not None
        ]
        super().load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)
        for variable, value in kept:
            variable.assign(value)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds the model from one distributed batch, reduced across
        # replicas as a whole structure, which MultiWorkerMirroredStrategy
        # rejects ("Attempt to convert a value (PerReplica...) to a Tensor";
        # plain `keras.Model.fit` fails the same way). Only shapes and dtypes
        # matter here, so one local replica's share of the batch will do.
        strategy = keras_compat.creation_strategy(self)
        if iterator is not None and strategy is not None:
            batches = keras_compat.first_epoch_batches(iterator)
            batch = None if batches is None else next(batches)
            data_batch = keras.tree.map_structure(
                lambda value: strategy.experimental_local_results(value)[0]
                if isinstance(value, tf.distribute.DistributedValues) else value,
                batch,
            )
            iterator = None
        result = super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        self._build_accumulator()
        return result

    def _build_accumulator(self) -> None:
        """Creates the exact gradient accumulator once the weights exist."""
        holder = self._accumulator_holder
        if holder.steps is None:
            return
        variables = self.trainable_weights
        if holder.accumulator is not None and holder.accumulator.matches(variables):
            return
        with self.distribute_strategy.scope():
            holder.accumulator = accumulation.GradientAccumulator(
                holder.steps, variables,
                groups=[
                    any(t.requires_labels for t in self.terms),
                    any(not t.requires_labels for t in self.terms),
                ],
            )

    def _get_metrics_result_or_logs(self, logs):
        # The steps log a subset of `self.metrics` (evaluate has no
        # distillation terms; an unlabeled batch no metrics), and for such
        # logs Keras falls back to the last step's values, which under
        # tf.distribute are per-replica results averaged over replicas:
        # wrong when the replicas' shares differ (an uneven last batch).
        # The metrics' variables are aggregated across replicas instead.
        results = self.get_metrics_result()
        if isinstance(logs, dict) and logs and set(logs) <= set(results):
            return {name: results[name] for name in logs}
        return super()._get_metrics_result_or_logs(logs)

    def _require_compiled(self) -> "Distiller":
        if not self.terms:
            raise RuntimeError(
                "The distiller must be compiled first: call `distiller.compile(...)`."
            )
        return self

    # ----------------------------------------------------------------- the step

    def _build_feature_extractors(self) -> None:
        """Builds, once per compile, the models that return named features."""
        teacher = self.teachers[0] if len(self.teachers) == 1 else None
        for term in self.terms:
            resolve = getattr(term, "resolve_layers", None)
            if resolve is not None:
                resolve(self.student, teacher)
        student_names = terms_lib._unique(
            n for term in self.terms for n in term.student_feature_names
        )
        teacher_names = terms_lib._unique(
            n for term in self.terms for n in term.teacher_feature_names
        )
        if teacher_names and len(self.teachers) != 1:
            raise ValueError(
                f"Terms that compare the teacher's features {list(teacher_names)} "
                "need exactly one live teacher model. Received: "
                + ("teacher=None (cached logits carry no features)."
                   if not self.teachers else f"{len(self.teachers)} teachers.")
            )
        student = teacher = None
        if student_names:
            student = features_lib.feature_extractor(self.student, student_names, "student")
        if teacher_names:
            teacher = features_lib.feature_extractor(self.teachers[0], teacher_names, "teacher")
        self._feature_extractors = _feature_extractors(
            student, student_names, teacher, teacher_names
        )
        if student_names or teacher_names:
            student_shapes = features_lib.feature_shapes(student, student_names) if student else {}
            teacher_shapes = features_lib.feature_shapes(teacher, teacher_names) if teacher else {}
            for term in self.terms:
                term.build_features(student_shapes, teacher_shapes)

    def _student_outputs(self, student_inputs, training: bool):
        """`(logits, {layer_name: features})` of the student."""
        extractor = self._feature_extractors
        if extractor.student is None:
            return self.student(student_inputs, training=training), {}
        outputs = extractor.student(student_inputs, training=training)
        return outputs[0], dict(zip(extractor.student_names, outputs[1:]))

    def _teacher_features(self, student_inputs, cached_logits):
        """`(teacher logits list, {layer_name: features}, problems)` for this
        batch; see `step_inputs.teacher_logits`."""
        extractor = self._feature_extractors
        features = {}
        if extractor.teacher is not None:
            # One teacher pass gives the features and, unless cached, the logits.
            outputs = extractor.teacher(student_inputs, training=False)
            features = {
                name: ops.stop_gradient(value)
                for name, value in zip(extractor.teacher_names, outputs[1:])
            }
            if cached_logits is None:
                cached_logits = [outputs[0]]
        logits, problems = step_inputs.teacher_logits(
            self.teachers, self.teacher_outputs, student_inputs, cached_logits
        )
        return logits, features, problems

    def _forward(self, x, y, sample_weight, training: bool, augment: bool = False):
        """Runs the models and the terms on one batch.

        With `augment=True` (training steps) the distiller's augmentation
        makes the one view that the teachers and the student see.

        Returns `(student_logits, labels, label_mask, sample_weight,
        loss_share, total, term_means, groups, problems)`; see
        `term_reduction.reduce_terms`;
        `sample_weight` is one weight per row of `student_logits` (for
        sequence outputs, per token) or `None`; `problems` is the
        `checks.counts_vector` of this replica's bad examples. For a mixed
        batch, `labels` and `label_mask` are those the metrics score.
        """
        student_inputs, cached_logits = step_inputs.split_inputs(x)
        mixing = None
        if augment and self.augmentation is not None:
            student_inputs, mixing = step_inputs.augmented_view(
                self.augmentation, student_inputs, cached_logits
            )
        teacher_logits, teacher_features, teacher_problems = self._teacher_features(
            student_inputs, cached_logits
        )
        student_logits, student_features = self._student_outputs(
            student_inputs, training=training
        )
        term_reduction.check_shapes(student_logits, teacher_logits)
        sample_weight, invalid_weights = checks.sanitize_sample_weight(sample_weight)
        row_weight = None
        if positions_lib.is_sequence(student_logits):
            self._check_sequence_terms(mixing, student_features, teacher_features)
            student_logits, teacher_logits, y, row_weight = term_reduction.flatten_positions(
                student_logits, teacher_logits, y, sample_weight, student_inputs
            )
            sample_weight = row_weight
        labels, label_mask, invalid_labels = term_reduction.prepare_labels(y, student_logits)
        label_mixing = None
        metric_labels, metric_mask = labels, label_mask
        if mixing is not None and labels is not None:
            partner_labels, share, label_mask, metric_labels, metric_mask = (
                term_reduction.mix_labels(labels, label_mask, mixing)
            )
            label_mixing = (partner_labels, share)
        loss_share, total, term_means, groups = term_reduction.reduce_terms(
            self.terms, student_logits, teacher_logits, labels, label_mask,
            sample_weight, student_features, teacher_features, label_mixing,
            row_weight=row_weight, padding_mask=positions_lib.padding_mask(student_inputs),
        )
        loss_share, total, groups = term_reduction.add_regularization(
            self.losses, self.terms, loss_share, total, groups
        )
        problems = checks.counts_vector(
            invalid_labels=invalid_labels,
            invalid_weights=invalid_weights,
            weighted_examples=term_reduction.weighted_examples(
                self.terms, student_logits, labels, label_mask, row_weight
            ),
            **teacher_problems,
        )
        if row_weight is not None and metric_mask is not None:
            # Padding is no example for the metrics either.
            metric_mask = metric_mask * ops.cast(row_weight > 0, "float32")
        return (student_logits, metric_labels, metric_mask, sample_weight, loss_share, total,
                term_means, groups, problems)

    def _check_sequence_terms(self, mixing, student_features, teacher_features) -> None:
        """What sequence outputs do not support yet, refused by name."""
        if mixing is not None:
            raise ValueError(
                "`augmentation` mixes whole examples, and this student's outputs "
                "have position axes (e.g. tokens): mixing token ids makes no "
                f"sense. Received augmentation={self.augmentation!r}."
            )
        if student_features or teacher_features:
            names = [t.name for t in self.terms if t.student_feature_names or t.teacher_feature_names]
            raise ValueError(
                "Feature terms compare one feature map per example; with "
                "outputs that have position axes (e.g. tokens) they are not "
                f"supported yet. Received feature terms {names}."
            )

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The distillation loss on one batch, as a training step computes it.

        Keras's signature, but the loss needs the inputs: the teachers run
        on `x` (the student's outputs alone, `y_pred`, cannot give it). The
        value is the global mean of `loss` in `fit`'s logs: every term,
        weighted, plus the layers' losses.

        Example:

        >>> import numpy as np, keras
        >>> model = lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> distiller = Distiller(student=model(), teacher=model())
        >>> distiller.compile(alpha=0.5)
        >>> loss = distiller.compute_loss(np.ones((2, 4), "float32"), np.array([0, 1]))
        >>> float(loss) > 0
        True
        """
        self._require_compiled()
        if x is None:
            raise ValueError(
                "`compute_loss` needs the batch's inputs `x`: the distillation "
                "loss runs the teachers on them. Received: x=None."
            )
        if y_pred is not None:
            raise ValueError(
                "`compute_loss` computes the student's outputs itself, from `x`, "
                "with the teachers'; pass `x` (and `y`, `sample_weight`) only. "
                "Received: y_pred of type " + type(y_pred).__name__ + "."
            )
        x = keras.tree.map_structure(ops.convert_to_tensor, x)
        if y is not None:
            y = ops.convert_to_tensor(y)
        values = self._forward(x, y, sample_weight, training)
        checks.raise_for_eager_problems(self, values[-1])
        return values[5]

    def term_losses(self, x, y=None, sample_weight=None, training: bool = False) -> dict:
        """Each term's mean value on one batch, before its `loss_weight`.

        Computed exactly as in a training step (same teachers, features and
        reductions), but without updating anything; differentiable, so
        `keras_kd.src.callbacks.callbacks.GradientNormBalancer` takes per-term gradients
        of it. Terms that need labels are left out when `y` is `None`.

        Example:

        >>> import numpy as np, keras
        >>> model = lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> distiller = Distiller(student=model(), teacher=model())
        >>> distiller.compile(alpha=0.5)
        >>> values = distiller.term_losses(np.ones((2, 4), "float32"), np.array([0, 1]))
        >>> sorted(values)
        ['distillation_loss', 'student_loss']
        """
        self._require_compiled()
        x = keras.tree.map_structure(ops.convert_to_tensor, x)
        if y is not None:
            y = ops.convert_to_tensor(y)
        values = self._forward(x, y, sample_weight, training)
        checks.raise_for_eager_problems(self, values[-1])
        return values[6]

    def train_step(self, data):
        self._require_compiled()
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        accumulator = self._accumulator_holder.accumulator
        with tf.GradientTape(persistent=accumulator is not None) as tape:
            (student_logits, labels, label_mask, sample_weight, loss_share, total, term_means,
             groups, problems) = self._forward(x, y, sample_weight, training=True, augment=True)
            if accumulator is None:
                targets = [self.optimizer.scale_loss(loss_share)]
            else:
                targets = [
                    None if group is None
                    else self.optimizer.scale_loss(ops.divide_no_nan(group[0], group[1]))
                    for group in groups
                ]
        trainable_weights = self.trainable_weights
        # A batch with bad labels, weights or teacher outputs leaves the
        # weights and the optimizer as they were (the same decision on every
        # replica); HealthCheck then raises on the host.
        bad = term_reduction.replica_sum(problems[: checks.WEIGHTED_EXAMPLES])
        ok = ops.all(ops.equal(bad, 0.0))
        if accumulator is None:
            gradients = tape.gradient(targets[0], trainable_weights)
            checks.apply_gradients_if(ok, self.optimizer, gradients, trainable_weights)
        else:
            group_gradients = [
                [None] * len(trainable_weights) if target is None
                else tape.gradient(target, trainable_weights)
                for target in targets
            ]
            del tape
            counts = [ops.zeros((), "float32") if g is None else g[1] for g in groups]
            ready = accumulator.accumulate(group_gradients, counts, ok)
            # The window's mean gradient is computed only when it is applied.
            checks.apply_gradients_if(
                ready, self.optimizer, accumulator.gradients, trainable_weights
            )
            accumulator.reset_if(ready)
        self._update_health(problems)

        batch_size = ops.shape(student_logits)[0]
        keras_compat.loss_tracker(self).update_state(total, sample_weight=batch_size)
        logs = {"loss": keras_compat.loss_tracker(self).result()}
        for term, tracker in zip(self.terms, self._term_trackers):
            if term.name in term_means:
                tracker.update_state(term_means[term.name], sample_weight=batch_size)
                logs[term.name] = tracker.result()
        # An unlabeled batch logs no student loss and no metrics.
        self._update_student_metrics(labels, label_mask, student_logits, sample_weight)
        if labels is not None and keras_compat.compile_metrics(self) is not None:
            logs.update(keras_compat.compile_metrics(self).result())
        return self._step_logs(logs)

    def test_step(self, data):
        self._require_compiled()
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        student_inputs, _ = step_inputs.split_inputs(x)
        student_logits = self.student(student_inputs, training=False)
        if y is None:
            raise ValueError(
                "`evaluate` scores the student against labels, but the data "
                "has none: pass `(x, y)` batches."
            )
        sample_weight, invalid_weights = checks.sanitize_sample_weight(sample_weight)
        row_weight = None
        if positions_lib.is_sequence(student_logits):
            student_logits, _, y, row_weight = term_reduction.flatten_positions(
                student_logits, [], y, sample_weight, student_inputs
            )
            sample_weight = row_weight
        labels, label_mask, invalid_labels = term_reduction.prepare_labels(y, student_logits)
        self._update_health(
            checks.counts_vector(invalid_labels=invalid_labels, invalid_weights=invalid_weights)
        )
        # Evaluation is the student's own business: its loss at T = 1, no teacher.
        hard_term = self.terms[0]
        _, _, term_means, _ = term_reduction.reduce_terms(
            [hard_term], student_logits, [], labels, label_mask, sample_weight,
            row_weight=row_weight,
        )
        if row_weight is not None:
            label_mask = label_mask * ops.cast(row_weight > 0, "float32")
        logs = {}
        if labels is not None:
            keras_compat.loss_tracker(self).update_state(
                term_means[hard_term.name], sample_weight=ops.shape(student_logits)[0]
            )
            logs["loss"] = keras_compat.loss_tracker(self).result()
            self._update_student_metrics(labels, label_mask, student_logits, sample_weight)
        if keras_compat.compile_metrics(self) is not None:
            logs.update(keras_compat.compile_metrics(self).result())
        return self._step_logs(logs)

    def _update_health(self, problems) -> None:
        if self._step_health is not None:
            self._step_health.update_state(problems)

    def _step_logs(self, logs: dict) -> dict:
        """The step's logs, shaped for Keras's cross-replica reduction."""
        strategy = tf.distribute.get_strategy()
        if keras_compat.in_multi_worker_mode(strategy):
            # Keras reduces step logs across workers with
            # `strategy.reduce("MEAN", log, axis=0)`, which rejects scalars
            # (plain `keras.Model.fit` fails there too). Epoch logs are read
            # from the metrics' aggregated variables instead.
            return {name: ops.reshape(value, (1,)) for name, value in logs.items()}
        return logs

    def get_metrics_result(self) -> dict:
        # After training on unlabeled data only, the compiled metrics have
        # never seen a label (nor been built): leave them out of the logs.
        results = {}
        for metric in self.metrics:
            if metric is keras_compat.compile_metrics(self) and not metric.built:
                continue
            result = metric.result()
            if isinstance(result, dict):
                results.update(result)
            else:
                results[metric.name] = result
        return keras_compat.metrics_result(results)

    def _update_student_metrics(self, labels, label_mask, student_logits, sample_weight):
        if labels is None or keras_compat.compile_metrics(self) is None:
            return
        keras_compat.compile_metrics(self).update_state(
            labels, student_logits, sample_weight=sample_weight, label_mask=label_mask
        )

    # ---------------------------------------------------------- serialization

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": [keras.saving.serialize_keras_object(t) for t in self.teachers],
            "teacher_weights": self.teacher_weights,
            "teacher_outputs": self.teacher_outputs,
            "augmentation": (
                None if self.augmentation is None
                else keras.saving.serialize_keras_object(self.augmentation)
            ),
            "distillation_losses": (
                [keras.saving.serialize_keras_object(l) for l in self.distillation_losses]
                if self.distillation_losses else None
            ),
            "distillation_loss_weights": self.distillation_loss_weights,
            "student_loss_weight": self.student_loss_weight,
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        config = dict(config)
        student = keras.saving.deserialize_keras_object(
            config.pop("student"), custom_objects=custom_objects
        )
        teachers = [
            keras.saving.deserialize_keras_object(t, custom_objects=custom_objects)
            for t in config.pop("teacher")
        ]
        teacher = None if not teachers else (teachers[0] if len(teachers) == 1 else teachers)
        if config.get("augmentation") is not None:
            config["augmentation"] = keras.saving.deserialize_keras_object(
                config["augmentation"], custom_objects=custom_objects
            )
        if config.get("distillation_losses"):
            config["distillation_losses"] = [
                keras.saving.deserialize_keras_object(l, custom_objects=custom_objects)
                for l in config["distillation_losses"]
            ]
        return cls(student=student, teacher=teacher, **config)

    def compile_from_config(self, config: dict) -> None:
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

"""What `Distiller.__init__` does with its arguments, before any model changes.

Pure checks with errors that name the argument: the two positional orders
(keras_kd's and keras.distillation's), the models and what they output, and
the `tf.distribute` strategy they were built under. Every check runs before
the distiller freezes a teacher, so a refused distiller leaves the user's
models as they were.
"""

from typing import List

import keras
import tensorflow as tf

from keras_kd.src import keras_compat
from keras_kd.src.distiller import checks
from keras_kd.src.terms import keras_distillation as keras_distillation_lib
from keras_kd.src.terms import losses
from keras_kd.src.terms import terms as terms_lib
from keras_kd.src.utils import keys, model_outputs

TEACHER_OUTPUTS = keys.OUTPUT_KINDS

def check_keras_model(model, argument: str) -> None:
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`{argument}` must be a `keras.Model` instance. "
            f"Received: {argument}={model!r} of type {type(model).__name__}."
        )


def teacher_list(teacher) -> List[keras.Model]:
    """`teacher` (a model, a list of models or `None`) as a list, checked.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> len(teacher_list([model, model])), teacher_list(None)
    (2, [])
    """
    if teacher is None:
        return []
    if isinstance(teacher, (list, tuple)):
        teachers = list(teacher)
        if not teachers:
            raise ValueError(
                "`teacher` must be a model, a non-empty list of models or "
                "None. Received: teacher=[]."
            )
    else:
        teachers = [teacher]
    for index, model in enumerate(teachers):
        check_keras_model(model, _teacher_argument(teachers, index))
    return teachers


def _teacher_argument(teachers: list, index: int) -> str:
    return "teacher" if len(teachers) == 1 else f"teacher[{index}]"


def check_models(student, teachers: list, teacher_outputs: str, teacher_weights) -> None:
    """What the models are and output: one output each, no shared weights,
    logits where logits are expected, the same number of classes."""
    if teacher_outputs not in TEACHER_OUTPUTS:
        raise ValueError(
            f"`teacher_outputs` must be one of {TEACHER_OUTPUTS}. "
            f"Received: teacher_outputs={teacher_outputs!r}."
        )
    checks.check_single_output(student, "student")
    for index, model in enumerate(teachers):
        checks.check_single_output(model, _teacher_argument(teachers, index))
    checks.check_no_shared_weights(student, teachers)
    if model_outputs.ends_in_softmax(student):
        raise ValueError(
            f"`student` ({student.name!r}) ends in a softmax, but the "
            "distiller needs the student's logits to apply a temperature. "
            "Remove the final softmax (use `activation=None`); "
            "`predict` then returns logits and `keras.ops.softmax` turns "
            "them into probabilities."
        )
    if teacher_outputs == "logits":
        for model in teachers:
            if model_outputs.ends_in_softmax(model):
                raise ValueError(
                    f"`teacher` ({model.name!r}) ends in a softmax, but "
                    "teacher_outputs='logits' expects logits. Pass "
                    "`teacher_outputs='probabilities'` to declare it, or "
                    "remove the teacher's final softmax."
                )
    student_classes = model_outputs.output_classes(student)
    if student_classes is not None and student_classes < 2:
        raise ValueError(
            "The student must output one logit per class, at least 2. "
            f"Received: student output shape {student.output_shape}. "
            "For a binary task use 2 logits."
        )
    for model in teachers:
        teacher_classes = model_outputs.output_classes(model)
        if None not in (student_classes, teacher_classes) and (
            student_classes != teacher_classes
        ):
            raise ValueError(
                "`teacher` and `student` must output the same number of "
                f"classes. Received: teacher {model.name!r} outputs "
                f"{teacher_classes}, student {student.name!r} outputs "
                f"{student_classes}."
            )
    if teacher_weights is not None and teachers:
        losses.normalize_teacher_weights(teacher_weights, len(teachers))


def check_outputs_by_probe(student, teachers, teacher_outputs: str) -> None:
    """Runs the models on a random probe batch and checks what they output.

    The last layer's name misses a softmax hidden in a `Lambda`, a nested
    model or `tf.nn.softmax`; its output does not: rows that are all
    non-negative and sum to 1 are probabilities.
    """
    values = checks.probe_outputs(student)
    if values is not None and checks.rows_are_probabilities(values):
        raise ValueError(
            f"`student` ({student.name!r}) outputs probabilities (on a random "
            "probe batch every row is non-negative and sums to 1): its "
            "softmax is hidden in a layer such as a `Lambda` or a nested "
            "model. The distiller needs the student's logits to apply a "
            "temperature; remove the softmax (`predict` then returns logits "
            "and `keras.ops.softmax` turns them into probabilities)."
        )
    for index, model in enumerate(teachers):
        argument = _teacher_argument(teachers, index)
        values = checks.probe_outputs(model)
        if values is None:
            continue
        probabilities = checks.rows_are_probabilities(values)
        if teacher_outputs == "logits" and probabilities:
            raise ValueError(
                f"`{argument}` ({model.name!r}) outputs probabilities (on a "
                "random probe batch every row is non-negative and sums to 1), "
                "but teacher_outputs='logits' expects logits. Pass "
                "`teacher_outputs='probabilities'` to declare it, or remove "
                "the teacher's final softmax."
            )
        if teacher_outputs == "probabilities" and not probabilities:
            row = values.reshape(-1, values.shape[-1])[0]
            raise ValueError(
                f"teacher_outputs='probabilities', but `{argument}` "
                f"({model.name!r}) outputs logits: on a random probe batch its "
                f"rows are not probabilities (the first sums to {row.sum():.4g}, "
                f"with values from {row.min():.4g} to {row.max():.4g}). Pass "
                "`teacher_outputs='logits'` (the default)."
            )


def variable_strategy(variable):
    """The strategy whose scope created `variable`; `None` for a plain one."""
    value = getattr(variable, "value", variable)
    if isinstance(value, tf.distribute.DistributedValues):
        return keras_compat.values_strategy(value)
    return None


def check_same_strategy(model: keras.Model, role: str, strategy) -> None:
    """Raises unless `model`'s variables fit a distiller made under `strategy`.

    A student must be built under the distiller's strategy: the optimizer
    updates its variables replica by replica. A frozen teacher may also be a
    plain model (each replica reads it), but not one that belongs to another
    strategy.
    """
    multi_replica = strategy is not None and strategy.num_replicas_in_sync > 1
    for variable in model.variables:
        owner = variable_strategy(variable)
        if owner is strategy or (owner is None and (role != "student" or not multi_replica)):
            continue
        where = "outside any strategy scope" if owner is None else (
            f"under `{type(owner).__name__}.scope()`"
            + (" of another strategy object" if strategy is not None else "")
        )
        made = "outside any strategy scope" if strategy is None else (
            f"under `{type(strategy).__name__}.scope()`"
        )
        raise ValueError(
            f"The {role} {model.name!r} was built {where}, but the distiller "
            f"was created {made}. Create the student, the teachers, the "
            "distiller and its optimizer all inside the same "
            "`strategy.scope()`, e.g.\n"
            "    with strategy.scope():\n"
            "        student = make_student(); teacher = load_teacher()\n"
            "        distiller = Distiller(student, teacher)\n"
            "        distiller.compile(optimizer='adam')\n"
            f"Received: {role} variable {variable.path!r} from {where}."
        )


#: Positional order of `keras.distillation.Distiller`, used when the third
#: positional argument is a `DistillationLoss` (or a list of them) or
#: `distillation_losses=` is given.
KERAS_POSITIONAL_ORDER = (
    "teacher", "student", "distillation_losses", "distillation_loss_weights",
    "student_loss_weight", "name",
)
#: keras_kd's own positional order.
KERAS_KD_POSITIONAL_ORDER = (
    "student", "teacher", "teacher_weights", "teacher_outputs", "augmentation", "name",
)

#: A positional call is refused as swapped when the model in the student's
#: place has at least this many times the parameters of the one in the
#: teacher's place, and at least `SWAP_PARAMETER_GAP` more: tiny models
#: (tests, toy examples) and near-equal pairs are never refused.
SWAP_PARAMETER_RATIO = 2.0
SWAP_PARAMETER_GAP = 10_000

UNSET = object()
#: `Distiller.__init__`'s keyword defaults that are not `None`.
DEFAULTS = {"teacher_outputs": "logits", "name": "distiller"}


def resolve_arguments(args: tuple, passed: dict) -> tuple:
    """`(values, order)`: the keyword arguments `passed`, completed from the
    positional `args` (see `resolve_positional`) and then from the defaults.

    A keyword argument equal to its default (`None`, or `DEFAULTS`'s value)
    counts as not given, so that a positional value may fill it.
    """
    given = {
        name: UNSET if (value == DEFAULTS[name] if name in DEFAULTS else value is None) else value
        for name, value in passed.items()
    }
    values, order = resolve_positional(args, given)
    values = {name: DEFAULTS.get(name) if value is UNSET else value
              for name, value in values.items()}
    return values, order


def resolve_positional(args: tuple, given: dict) -> tuple:
    """Maps positional arguments to names; returns `(values, order)`.

    `given` holds the keyword arguments (`UNSET` when not passed). The order
    is keras.distillation's when `distillation_losses` is given or the third
    positional argument is a `DistillationLoss`, keras_kd's otherwise.
    """
    keras_order = given["distillation_losses"] is not UNSET or (
        len(args) >= 3 and keras_distillation_lib.looks_like_distillation_losses(args[2])
    )
    order = KERAS_POSITIONAL_ORDER if keras_order else KERAS_KD_POSITIONAL_ORDER
    if len(args) > len(order):
        raise TypeError(
            f"`Distiller` takes at most {len(order)} positional arguments "
            f"({', '.join(order)}) in this form. Received {len(args)}. Pass "
            "the others by keyword."
        )
    values = dict(given)
    for name, value in zip(order, args):
        if values[name] is not UNSET:
            raise TypeError(
                f"`Distiller` got two values for `{name}`: positional argument "
                f"{order.index(name) + 1} (the order here is "
                f"`Distiller({', '.join(order[:3])}, ...)`) and `{name}=`. "
                "Pass the models by keyword: "
                "`Distiller(student=..., teacher=..., ...)`."
            )
        values[name] = value
    return values, order


def check_positional_swap(args: tuple, order: tuple, student, teacher) -> None:
    """Refuses a positional call whose student looks like the teacher.

    keras_kd's order is `Distiller(student, teacher)`, keras.distillation's
    `Distiller(teacher, student, distillation_losses)`: a call written for
    one and read by the other would train the teacher from the student.
    """
    positional = order[: len(args)]
    if "student" not in positional or "teacher" not in positional:
        return
    if not isinstance(student, keras.Model) or not isinstance(teacher, keras.Model):
        return
    if not (student.built and teacher.built):
        return
    student_params, teacher_params = student.count_params(), teacher.count_params()
    if student_params < SWAP_PARAMETER_RATIO * max(teacher_params, 1):
        return
    if student_params - teacher_params < SWAP_PARAMETER_GAP:
        return
    where = {name: order.index(name) + 1 for name in ("student", "teacher")}
    raise ValueError(
        "`Distiller` got its models by position, and the one in the "
        f"student's place (argument {where['student']}, {student.name!r}, "
        f"{student_params:,} parameters) is {student_params / max(teacher_params, 1):.1f}x "
        f"the one in the teacher's place (argument {where['teacher']}, "
        f"{teacher.name!r}, {teacher_params:,} parameters): the two models "
        "look swapped. keras_kd's order is `Distiller(student, teacher)`; "
        "keras.distillation's is `Distiller(teacher, student, "
        "distillation_losses)`, used when a third argument or "
        "`distillation_losses=` is given. Pass the models by keyword, "
        "`Distiller(student=..., teacher=...)`, which is never refused for "
        "their sizes."
    )


def check_student_loss_weight(value) -> float:
    weight = terms_lib._validate_loss_weight(value, "student_loss_weight")
    if weight > 1.0:
        raise ValueError(
            "`student_loss_weight` must be in [0, 1]. "
            f"Received: student_loss_weight={value!r}."
        )
    return weight


def keras_style_losses(distillation_losses, distillation_loss_weights, student_loss_weight):
    """keras.distillation's configuration: `(losses, weights,
    student_loss_weight)`, with `([], None, weight)` for keras_kd's own form."""
    keras_style = distillation_losses is not None
    if keras_style:
        keras_losses, keras_weights = keras_distillation_lib.normalize_distillation_losses(
            distillation_losses, distillation_loss_weights
        )
    elif distillation_loss_weights is not None:
        raise ValueError(
            "`distillation_loss_weights` weighs the `distillation_losses`, "
            "but none were given. Received: distillation_loss_weights="
            f"{distillation_loss_weights!r}, distillation_losses=None."
        )
    if student_loss_weight is not None:
        student_loss_weight = check_student_loss_weight(student_loss_weight)
    elif keras_style:
        student_loss_weight = 0.5  # keras.distillation's default
    if not keras_style:
        return [], None, student_loss_weight
    return keras_losses, keras_weights, student_loss_weight

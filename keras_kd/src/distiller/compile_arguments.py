"""What `Distiller.compile` does with its arguments, before Keras sees them.

Pure functions: checks with errors that name the argument, the two ways of
setting the loss weights (keras_kd's `alpha`/`temperature`, keras.distillation's
`student_loss_weight` and `distillation_losses`), the terms they become,
and the gradient accumulation the distiller takes over from the optimizer.
"""

import dataclasses
import warnings
from typing import Any, Optional, Sequence

import tensorflow as tf

from keras_kd.src.terms import divergences
from keras_kd.src.terms import keras_distillation as keras_distillation_lib
from keras_kd.src.terms import losses
from keras_kd.src.terms import terms as terms_lib


def positional(args: tuple, named: dict) -> dict:
    """`compile`'s positional arguments after `optimizer`: `loss, metrics`,
    as in `keras.Model.compile` (and keras.distillation); the rest are
    keyword-only, so that nothing lands in the wrong argument silently.

    Example:

    >>> positional(("mse",), {"loss": None, "metrics": None})["loss"]
    'mse'
    """
    order = ("loss", "metrics")
    if len(args) > len(order):
        raise TypeError(
            f"`compile` takes at most {len(order) + 1} positional arguments "
            f"(optimizer, {', '.join(order)}), as keras.Model.compile does; the "
            f"others are keyword-only. Received {len(args) + 1} positional arguments."
        )
    if args and isinstance(args[0], (list, tuple, dict)):
        raise TypeError(
            "`compile`'s second positional argument is the student's `loss`, as in "
            f"keras.Model.compile. Received a {type(args[0]).__name__} there: "
            f"{args[0]!r}. Metrics go in `metrics=[...]`."
        )
    named = dict(named)
    for argument, value in zip(order, args):
        if named[argument] is not None:
            raise TypeError(f"`compile` got two values for `{argument}`.")
        named[argument] = value
    return named


def student_loss(loss, student_loss_fn):
    """The student's loss from `loss` (keras.distillation's name, Keras
    losses from logits) or `student_loss_fn` (keras_kd's); not both."""
    if loss is not None and student_loss_fn is not None:
        raise ValueError(
            "`loss` and `student_loss_fn` both set the student's loss; pass "
            f"one. Received: loss={loss!r}, student_loss_fn={student_loss_fn!r}."
        )
    if loss is not None:
        return keras_distillation_lib.student_loss_from_keras(loss)
    return student_loss_fn


def check_keras_style(student_loss_weight: float, divergence: str, jsd_beta: float,
                      alpha, temperature, distillation_loss_fn) -> None:
    """Refuses keras_kd's loss arguments on a distiller created the
    keras.distillation way, where other arguments govern them."""
    if (divergence, jsd_beta) != ("forward_kl", 0.5):
        raise ValueError(
            "This distiller was created the keras.distillation way "
            "(`distillation_losses=...`), whose `LogitsDistillation` is a "
            "forward KL; `compile(divergence=...)` sets keras_kd's own "
            f"soft-target term. Received: divergence={divergence!r}. Create "
            "the Distiller without `distillation_losses`."
        )
    governed = (
        ("alpha", alpha, f"`student_loss_weight` ({student_loss_weight:g}, "
         "given to the Distiller) governs the weight of the student loss"),
        ("temperature", temperature, "each `LogitsDistillation(temperature=...)` "
         "governs its own temperature"),
        ("distillation_loss_fn", distillation_loss_fn, "the `distillation_losses` "
         "govern the distillation loss"),
    )
    for argument, value, rule in governed:
        if value is not None:
            raise ValueError(
                f"This distiller was created the keras.distillation way "
                f"(`distillation_losses=...`): {rule}, so `compile` "
                f"refuses keras_kd's `{argument}`. Received: "
                f"{argument}={value!r}. Either drop `{argument}`, or "
                "create the Distiller without `distillation_losses` and "
                "use `compile(alpha=..., temperature=...)`."
            )


def keras_kd_weights(alpha, temperature, student_loss_weight: Optional[float],
                     default_alpha: float, default_temperature: float) -> tuple:
    """`(alpha, temperature)` of keras_kd's loss, checked, with defaults."""
    if alpha is not None and student_loss_weight is not None:
        raise ValueError(
            "`student_loss_weight` (given to the Distiller) and `alpha` "
            "(given to compile) both set the weight of the student loss. "
            f"Received: student_loss_weight={student_loss_weight!r}, "
            f"alpha={alpha!r}. `student_loss_weight` governs once given; "
            "pass only one of them."
        )
    if alpha is None:
        alpha = default_alpha if student_loss_weight is None else student_loss_weight
    alpha_value = terms_lib._validate_loss_weight(alpha, "alpha")
    if alpha_value > 1.0:
        raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha!r}.")
    temperature = losses.validate_temperature(
        default_temperature if temperature is None else temperature
    )
    return alpha_value, temperature


def check_extra_terms(distillation_terms) -> list:
    """`distillation_terms` as a list of `DistillationTerm`s."""
    extra_terms = list(distillation_terms or [])
    for index, term in enumerate(extra_terms):
        if not isinstance(term, terms_lib.DistillationTerm):
            hint = (
                " keras.distillation losses go in `Distiller(distillation_losses=...)`."
                if keras_distillation_lib.is_distillation_loss(term) else ""
            )
            raise TypeError(
                "`distillation_terms` must hold `DistillationTerm` "
                f"instances. Received: distillation_terms[{index}]="
                f"{term!r} of type {type(term).__name__}.{hint}"
            )
    return extra_terms


def build_terms(student_loss_fn, alpha: float, extra_terms: Sequence, *,
                distillation_losses=None, distillation_loss_weights=None,
                teacher_weights=None, teacher_reduction: str = "mean_probabilities",
                temperature: Optional[float] = None, distillation_loss_fn=None,
                divergence: str = "forward_kl", jsd_beta: float = 0.5,
                chunk_size="auto") -> list:
    """The terms of the loss: the student's hard-label loss (weight `alpha`),
    the soft-target terms (weight `1 - alpha`: keras.distillation's losses
    when `distillation_losses` is given, else Hinton's), then `extra_terms`."""
    hard_term = terms_lib.HardLabelLoss(
        student_loss_fn, loss_weight=alpha, name="student_loss"
    )
    if distillation_losses:
        names = keras_distillation_lib.term_names(distillation_losses)
        distillation = [
            keras_distillation_lib.as_term(
                item,
                loss_weight=(1.0 - alpha) * weight,
                name=term_name,
                teacher_weights=teacher_weights,
                teacher_reduction=teacher_reduction,
            )
            for item, weight, term_name in zip(
                distillation_losses, distillation_loss_weights, names
            )
        ]
    else:
        distillation = [
            terms_lib.HintonKD(
                temperature=temperature,
                loss_fn=distillation_loss_fn,
                teacher_weights=teacher_weights,
                teacher_reduction=teacher_reduction,
                divergence=divergence,
                jsd_beta=jsd_beta,
                chunk_size=chunk_size,
                loss_weight=1.0 - alpha,
                name="distillation_loss",
            )
        ]
    terms = [hard_term, *distillation, *extra_terms]
    names = [term.name for term in terms]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            "Every distillation term needs a unique name; "
            f"{duplicates} is used more than once. Received term names: "
            f"{names}. ('student_loss' and 'distillation_loss' are "
            "taken by the terms `compile` builds.)"
        )
    return terms


def take_over_accumulation(optimizer, steps: Optional[int]) -> Optional[int]:
    """The distiller's micro-batches per step, moved off the optimizer.

    Keras's own accumulation averages per-batch means, inexact for
    token-averaged losses, so the optimizer must not accumulate as well:
    its `gradient_accumulation_steps` (and a loss-scale wrapper's inner
    optimizer's) become the distiller's.
    """
    if steps is not None and (
        isinstance(steps, bool) or not isinstance(steps, int) or steps < 2
    ):
        raise ValueError(
            "`gradient_accumulation_steps` must be an integer >= 2 or None. "
            f"Received: gradient_accumulation_steps={steps!r}."
        )
    holders = [optimizer]
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        holders.append(inner)
    for holder in holders:
        own = getattr(holder, "gradient_accumulation_steps", None)
        if not own:
            continue
        if steps is not None and own != steps:
            raise ValueError(
                "The optimizer and `compile` give different "
                "`gradient_accumulation_steps`. Received: "
                f"gradient_accumulation_steps={steps!r} and an optimizer with "
                f"gradient_accumulation_steps={own!r}; pass one of them."
            )
        if holder.built:
            raise ValueError(
                "The optimizer was already built with Keras's own gradient "
                f"accumulation (gradient_accumulation_steps={own!r}); the "
                "distiller accumulates exactly itself. Pass a new optimizer, or "
                "one created without `gradient_accumulation_steps` and "
                f"`compile(gradient_accumulation_steps={own!r})`."
            )
        holder.gradient_accumulation_steps = None
        steps = own
    return steps


def xla_unsupported(strategy) -> bool:
    """True for a strategy whose replicas share one host's CPUs.

    XLA-compiled steps cannot read variables placed on another logical CPU
    device (TensorFlow's "tf.Variable on a different device" XLA limitation),
    so plain Keras fails the same way there.
    """
    if strategy.num_replicas_in_sync < 2:
        return False
    devices = getattr(strategy.extended, "worker_devices", ())
    cpus = [d for d in devices if tf.DeviceSpec.from_string(d).device_type == "CPU"]
    return len(cpus) > 1


def jit_compile_for(strategy, jit_compile, requested) -> bool:
    """`jit_compile` (Keras's resolved value), or `False` with a warning
    where the strategy's replicas share one host's CPUs (`requested`: the
    value the user passed, for the message)."""
    if jit_compile and xla_unsupported(strategy):
        warnings.warn(
            "jit_compile=True is not supported with several replicas on "
            "CPU devices (XLA cannot read a variable placed on another "
            "device). Proceeding with jit_compile=False. Received: "
            f"jit_compile={requested!r} under "
            f"{type(strategy).__name__} with "
            f"{strategy.num_replicas_in_sync} replicas.",
            stacklevel=3,
        )
        return False
    return jit_compile


@dataclasses.dataclass(frozen=True)
class LossSettings:
    """`compile`'s loss arguments, checked, with the defaults filled in.

    `alpha` is the weight of the student loss (with keras.distillation
    losses: the distiller's `student_loss_weight`); `temperature` is `None`
    there, where each `LogitsDistillation` has its own.
    """

    loss: Any
    metrics: Any
    student_loss_fn: Any
    distillation_loss_fn: Any
    alpha: float
    temperature: Optional[float]
    extra_terms: list
    divergence: str
    jsd_beta: float
    chunk_size: Any


def loss_settings(args: tuple, named: dict, *, keras_style: bool,
                  student_loss_weight: Optional[float], divergence: str, jsd_beta: float,
                  chunk_size, default_alpha: float, default_temperature: float) -> LossSettings:
    """Checks `compile`'s loss arguments (`named`, completed from the
    positional `args`) before Keras sees any of them."""
    named = positional(args, named)
    student_loss_fn = student_loss(named["loss"], named["student_loss_fn"])
    divergence, jsd_beta = divergences.check_divergence(divergence, jsd_beta)
    chunk_size = divergences.check_chunk_size(chunk_size)
    alpha, temperature = named["alpha"], named["temperature"]
    if keras_style:
        check_keras_style(student_loss_weight, divergence, jsd_beta, alpha, temperature,
                          named["distillation_loss_fn"])
        alpha = student_loss_weight
    else:
        alpha, temperature = keras_kd_weights(
            alpha, temperature, student_loss_weight,
            default_alpha=default_alpha, default_temperature=default_temperature,
        )
    return LossSettings(
        loss=named["loss"], metrics=named["metrics"], student_loss_fn=student_loss_fn,
        distillation_loss_fn=named["distillation_loss_fn"], alpha=alpha,
        temperature=temperature, extra_terms=check_extra_terms(named["distillation_terms"]),
        divergence=divergence, jsd_beta=jsd_beta, chunk_size=chunk_size,
    )


def compile_config(settings: LossSettings, *, keras_style: bool,
                   student_loss_weight: Optional[float], **keras_arguments) -> dict:
    """What `compile_from_config` passes back to `compile` on loading:
    `settings` and the Keras arguments (`optimizer`, `weighted_metrics`, ...),
    as resolved (the loss strings, the defaults filled in)."""
    config = dict(
        metrics=settings.metrics,
        loss=settings.loss,
        student_loss_fn=None if settings.loss is not None else settings.student_loss_fn,
        distillation_terms=settings.extra_terms,
        **keras_arguments,
    )
    if not keras_style:
        config.update(
            divergence=settings.divergence,
            jsd_beta=settings.jsd_beta,
            chunk_size=settings.chunk_size,
            distillation_loss_fn=settings.distillation_loss_fn,
            # From the distiller's student_loss_weight: not repeated here.
            alpha=None if student_loss_weight is not None else settings.alpha,
            temperature=settings.temperature,
        )
    return config

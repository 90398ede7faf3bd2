"""How one batch's terms become the loss: pure functions of tensors.

Labels made safe to index with (bad ones counted, not asserted), sequence
outputs flattened to weighted rows, mixed labels for a mixed batch, and every
term averaged over the *global* batch, so that gradients are exact under any
`tf.distribute` strategy and under exact gradient accumulation
(`keras_kd.accumulation`). `Distiller._forward` calls them in that order.
"""

import tensorflow as tf
from keras import ops

from keras_kd.src.distiller import checks
from keras_kd.src.distiller import positions as positions_lib
from keras_kd.src.terms import divergences
from keras_kd.src.terms import terms as terms_lib


def replica_sum(values):
    """Sums `values` over replicas; identity outside a multi-replica step."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)


def prepare_labels(labels, student_logits):
    """Returns `(labels, mask, invalid)`: labels safe to index with, a
    float mask of the labeled examples, and the number of invalid labels
    (out of range, fractional, non-finite), which are masked out.

    Counted rather than asserted: asserts vanish under XLA, and a graph
    error buries its message; `checks.HealthCheck` raises on the host.
    """
    if labels is None:
        return None, None, ops.zeros((), "float32")
    if labels.dtype == tf.string or labels.dtype == tf.bool:
        raise ValueError(
            "Labels must be numbers: integer class indices or one-hot "
            f"rows. Received labels of dtype {labels.dtype.name}."
        )
    classes = student_logits.shape[-1]
    if terms_lib.is_one_hot(labels, student_logits):
        return checks.sanitize_one_hot_labels(labels)
    rank = len(labels.shape)
    if rank > 2 or (rank == 2 and labels.shape[-1] not in (None, 1)):
        raise ValueError(
            "Labels must be class indices shaped (batch,) or (batch, 1), "
            f"or one-hot rows shaped (batch, {classes}) for the student's "
            f"{classes} outputs. Received labels of shape "
            f"{tuple(labels.shape)}."
        )
    return checks.sanitize_sparse_labels(labels, classes)


def check_shapes(student_logits, teacher_logits: list) -> None:
    """Refuses teachers whose outputs do not line up with the student's."""
    classes = student_logits.shape[-1]
    positions_lib.check_same_positions(student_logits, teacher_logits)
    for index, logits in enumerate(teacher_logits):
        if divergences.is_top_k(logits):
            continue
        if logits.shape[-1] is not None and classes is not None and logits.shape[-1] != classes:
            raise ValueError(
                "`teacher` and `student` must output the same number of "
                f"classes. Received: teacher output {index} has "
                f"{logits.shape[-1]} classes, the student has {classes}."
            )


def mix_labels(labels, label_mask, mixing):
    """Labels of the mixing partners and the masks of a mixed batch.

    Returns `(partner_labels, weight, loss_mask, metric_labels, metric_mask)`:
    the hard loss takes both labels of an example where both are labeled;
    the metrics score the label with the larger share.

    Example:

    >>> import numpy as np
    >>> labels, mask = np.array([0, 1, 2]), np.ones(3, "float32")
    >>> partner, weight = np.array([1, 2, 0]), np.array([0.7, 0.2, 0.5], "float32")
    >>> _, _, _, metric_labels, _ = mix_labels(labels, mask, (partner, weight))
    >>> [int(label) for label in metric_labels]
    [0, 2, 2]
    """
    partner, weight = mixing
    partner_labels = ops.take(labels, partner, axis=0)
    partner_mask = ops.take(label_mask, partner, axis=0)
    loss_mask = label_mask * partner_mask
    own = weight >= 0.5
    label_own = ops.reshape(own, (-1,) + (1,) * (len(labels.shape) - 1))
    metric_labels = ops.where(label_own, labels, partner_labels)
    metric_mask = ops.where(own, label_mask, partner_mask)
    return partner_labels, weight, loss_mask, metric_labels, metric_mask


def flatten_positions(student_logits, teacher_logits, y, sample_weight, inputs):
    """Sequence outputs as rows: `(student, teachers, labels, row_weight)`.

    See `keras_kd.positions`: every row (token) weighs `sample_weight`
    times the inputs' `padding_mask`; the terms average over that weight.
    """
    row_weight = positions_lib.row_weights(
        student_logits, sample_weight, positions_lib.combined_mask(inputs, student_logits)
    )
    labels = positions_lib.flatten_labels(y, student_logits)
    classes = student_logits.shape[-1]
    teacher_logits = [positions_lib.flatten_rows(t, classes) for t in teacher_logits]
    return positions_lib.flatten_rows(student_logits), teacher_logits, labels, row_weight


def reduce_terms(
    terms, student_logits, teacher_logits, labels, label_mask, sample_weight,
    student_features=None, teacher_features=None, label_mixing=None,
    row_weight=None, padding_mask=None,
):
    """Averages each term over the *global* batch and adds them up.

    Returns `(loss_share, total, term_means, groups)`. `loss_share` is this
    replica's share of the total loss: summed over replicas it is the
    global mean, so gradients are exact under any strategy, whatever the
    split. `total` and `term_means` are global values, for logging.
    Terms that need labels are averaged over the labeled examples only;
    with `label_mixing=(partner_labels, weight)` (a mixed batch) such a
    term is `weight * term(labels) + (1 - weight) * term(partner_labels)`.
    With `row_weight` (sequence outputs flattened to one row per token,
    see `keras_kd.positions`) each term is the weighted mean over the
    rows: `sum(w * loss) / sum(w)`. Terms whose `uses_padding_mask` is
    true also receive `padding_mask` (the inputs', or `None`).
    """
    batch_size = ops.cast(ops.shape(student_logits)[0], "float32")
    if row_weight is not None:
        example_weight = row_weight
        batch_size = ops.sum(row_weight)
    else:
        example_weight = ops.ones_like(student_logits[:, 0], dtype="float32")
    if sample_weight is not None and row_weight is None:
        example_weight = example_weight * ops.reshape(
            ops.cast(sample_weight, "float32"), (-1,)
        )
    active_terms, sums, counts = [], [], []
    for term in terms:
        if term.requires_labels and labels is None:
            continue
        extra = {"padding_mask": padding_mask} if getattr(term, "uses_padding_mask", False) else {}
        per_example = term(
            student_logits,
            teacher_logits,
            labels=labels if term.requires_labels else None,
            student_features=student_features,
            teacher_features=teacher_features,
            **extra,
        )
        if term.requires_labels and label_mixing is not None:
            partner_labels, share = label_mixing
            partner_loss = term(
                student_logits,
                teacher_logits,
                labels=partner_labels,
                student_features=student_features,
                teacher_features=teacher_features,
                **extra,
            )
            per_example = share * ops.cast(per_example, "float32") + (1.0 - share) * ops.cast(
                partner_loss, "float32"
            )
        weight, count = example_weight, batch_size
        if term.requires_labels:
            weight = weight * label_mask
            count = ops.sum(label_mask) if row_weight is None else ops.sum(weight)
        active_terms.append(term)
        sums.append(ops.sum(ops.cast(per_example, "float32") * weight))
        counts.append(count)
    if not active_terms:
        zero = ops.zeros((), "float32")
        return zero, zero, {}, [None, None]
    local_sums, local_counts = ops.stack(sums), ops.stack(counts)
    reduced = replica_sum(
        ops.concatenate([local_counts, ops.stop_gradient(local_sums)])
    )
    global_counts = reduced[: len(active_terms)]
    global_sums = reduced[len(active_terms) :]
    shares = ops.divide_no_nan(local_sums, global_counts)
    means = ops.divide_no_nan(global_sums, global_counts)
    weights = ops.stack([term.loss_weight.value for term in active_terms])
    # Global values whose gradient is this replica's share, so that
    # `term_losses` can be differentiated term by term.
    differentiable_means = shares + ops.stop_gradient(means - shares)
    term_means = {
        term.name: differentiable_means[i] for i, term in enumerate(active_terms)
    }
    # The terms that need labels share one count (the labelled rows), the
    # others another (all rows): `(local weighted sum, global count)` for
    # the two groups, in that order (`None` for a group without terms),
    # whose `sum / count` add up to `loss_share`. Exact gradient
    # accumulation (`keras_kd.accumulation`) keeps the groups apart.
    groups = []
    for needs_labels in (True, False):
        members = [i for i, t in enumerate(active_terms) if t.requires_labels == needs_labels]
        groups.append((
            ops.sum(ops.stack([weights[i] * local_sums[i] for i in members])),
            global_counts[members[0]],
        ) if members else None)
    return ops.sum(weights * shares), ops.sum(weights * means), term_means, groups


def add_regularization(layer_losses, terms, loss_share, total, groups):
    """Adds layer losses (regularizers, `add_loss`), split over replicas.

    In the count groups the regularization joins the last group, times
    its count: accumulated over micro-batches and divided by the summed
    count, it is then added once per optimizer step, as in one large
    batch (a count-weighted mean for activity regularizers).
    """
    if not layer_losses:
        return loss_share, total, groups
    regularization = ops.sum([ops.cast(loss, "float32") for loss in layer_losses])
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    share = regularization / replicas
    index = regularization_group(terms)
    groups = list(groups)
    if groups[index] is not None:
        local_sum, count = groups[index]
        groups[index] = (local_sum + share * ops.stop_gradient(count), count)
    return loss_share + share, total + regularization, groups


def regularization_group(terms) -> int:
    """The count group the layer losses join: the unlabelled terms' (the
    distillation terms, present in every batch) when there are any."""
    return 1 if any(not t.requires_labels for t in terms) else 0


def weighted_examples(terms, student_logits, labels, label_mask, row_weight=None):
    """Sum over the terms of `loss_weight` times the examples they see:
    zero for a whole epoch means nothing was trained (e.g. alpha=1 on
    unlabeled data)."""
    batch_size = ops.cast(ops.shape(student_logits)[0], "float32")
    if row_weight is not None:
        batch_size = ops.sum(row_weight)
    total = ops.zeros((), "float32")
    for term in terms:
        if term.requires_labels:
            if labels is None:
                continue
            count = ops.sum(
                label_mask if row_weight is None else label_mask * row_weight
            )
        else:
            count = batch_size
        total = total + term.loss_weight.value * count
    return total

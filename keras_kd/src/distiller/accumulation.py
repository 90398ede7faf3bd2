"""Exact gradient accumulation for token-averaged losses.

Every distillation term is a mean over the real rows (examples, or tokens
of a sequence model) of the *global* batch: `sum(w * loss) / sum(w)`. An
optimizer's `gradient_accumulation_steps=k` averages `k` micro-batch
gradients, each already divided by its own count: `mean_i(g_i / c_i)`.
That equals the gradient of one `k`-times-larger batch,
`sum_i(g_i) / sum_i(c_i)`, only when every micro-batch holds the same
number of real rows, which padded language-model batches rarely do (the
bug class of TRL's GKD and ms-swift).

So the distiller owns the accumulation. The terms fall into *groups* that
share a count (the terms that need labels count the labelled rows; the
others count all real rows). For each group the accumulator keeps the sum
of the micro-batches' gradient sums and the sum of their counts, and the
optimizer steps once per `k` micro-batches with
`sum_g(G_g / C_g)`: exactly the gradient of the large batch. The price is
one gradient accumulator per group (at most two copies of the trainable
weights) and one backward pass per group in each micro-step.
"""

from typing import List, Optional, Sequence

import keras
from keras import ops


def combine_group_gradients(group_gradients: Sequence[Sequence], group_counts: Sequence):
    """`sum_g(G_g / C_g)` for each variable: the gradient of the global mean.

    Args:
        group_gradients: One list per group of accumulated gradient *sums*,
            aligned with the variables; `None` where a variable has no
            gradient in that group.
        group_counts: One accumulated count per group (a scalar); a group
            that counted nothing contributes nothing.

    Returns:
        One gradient per variable, `None` where no group has one.

    Example:

    >>> import numpy as np
    >>> g = combine_group_gradients([[np.float32(6.0)], [np.float32(2.0)]],
    ...                             [np.float32(3.0), np.float32(4.0)])
    >>> float(g[0])
    2.5
    """
    combined = []
    for per_group in zip(*group_gradients):
        total = None
        for gradient, count in zip(per_group, group_counts):
            if gradient is None:
                continue
            share = ops.divide_no_nan(gradient, ops.cast(count, gradient.dtype))
            total = share if total is None else total + share
        combined.append(total)
    return combined


class GradientAccumulator:
    """Accumulates group gradients over `steps` micro-batches, exactly.

    A plain object (Keras does not track it): its variables are training
    state, not weights, and are neither saved nor counted. They are
    per-replica (`synchronization="on_read"`): each replica accumulates the
    gradient of its own share, and the optimizer's usual cross-replica sum
    happens once, when the accumulated gradient is applied.

    Args:
        steps: Micro-batches per optimizer step, an integer `>= 2`.
        variables: The trainable variables, in the order of the gradients.
        groups: One flag per count group: whether the loss has terms in it
            (a group without terms gets no accumulator variables).

    Example:

    >>> import numpy as np, keras
    >>> w = keras.Variable(np.zeros(2, "float32"))
    >>> acc = GradientAccumulator(steps=2, variables=[w], groups=[True])
    >>> ready = acc.accumulate([[np.array([2.0, 4.0], "float32")]], [2.0], ok=True)
    >>> bool(ready)
    False
    >>> ready = acc.accumulate([[np.array([1.0, 1.0], "float32")]], [1.0], ok=True)
    >>> bool(ready), acc.gradients()[0].numpy().tolist()
    (True, [1.6666666269302368, 3.0])
    """

    def __init__(self, steps: int, variables: Sequence, groups: Sequence[bool]):
        self.steps = int(steps)
        self.variables = list(variables)
        self.groups = len(groups)
        self._gradient_sums = [
            [
                keras.Variable(
                    ops.zeros(v.shape, "float32"), trainable=False,
                    synchronization="on_read", aggregation="sum",
                    name=f"kd_gradient_sum_{g}_{i}",
                )
                for i, v in enumerate(self.variables)
            ] if present else None
            for g, present in enumerate(groups)
        ]
        # Counts are global (already summed over replicas), so every
        # replica holds the same value.
        self._counts = keras.Variable(
            ops.zeros((self.groups,), "float32"), trainable=False,
            synchronization="on_read", aggregation="only_first_replica",
            name="kd_accumulated_counts",
        )
        self._micro_steps = keras.Variable(
            0, dtype="int32", trainable=False,
            synchronization="on_read", aggregation="only_first_replica",
            name="kd_accumulated_micro_steps",
        )
        self._seen_gradient = [[False] * len(self.variables) for _ in range(self.groups)]

    def matches(self, variables: Sequence) -> bool:
        """Whether the accumulator was built for exactly these variables."""
        variables = list(variables)
        return len(variables) == len(self.variables) and all(
            a is b for a, b in zip(variables, self.variables)
        )

    def accumulate(self, group_gradients: Sequence[Sequence], group_counts: Sequence, ok):
        """Adds one micro-batch; returns whether the window is complete.

        `group_gradients[g]` are the gradients of group `g`'s *mean* on this
        micro-batch (a mean keeps their scale, and float16 activations'
        gradients, in range); multiplied by the count here, in float32,
        they become the sums the exact mean needs. A micro-batch with
        `ok=False` (bad labels or teacher outputs) adds nothing.
        """
        ok = ops.convert_to_tensor(ok)
        for g, (gradients, count) in enumerate(zip(group_gradients, group_counts)):
            count = ops.cast(count, "float32")
            for i, gradient in enumerate(gradients):
                if gradient is None:
                    continue
                if self._gradient_sums[g] is None:
                    raise ValueError(
                        f"Count group {g} was built without terms, yet received "
                        "gradients: rebuild the accumulator for these terms."
                    )
                self._seen_gradient[g][i] = True
                total = self._gradient_sums[g][i]
                added = total + ops.cast(gradient, "float32") * count
                total.assign(ops.where(ok, added, total))
        counts = ops.stack([ops.cast(c, "float32") for c in group_counts])
        self._counts.assign(ops.where(ok, self._counts + counts, self._counts))
        self._micro_steps.assign(self._micro_steps + ops.cast(ok, "int32"))
        return ops.logical_and(ok, ops.equal(self._micro_steps % self.steps, 0))

    def gradients(self) -> List[Optional[object]]:
        """The accumulated gradient of the global mean, one per variable."""
        group_gradients = [
            [None] * len(self.variables) if sums is None
            else [total.value if seen else None for total, seen in zip(sums, seen_row)]
            for sums, seen_row in zip(self._gradient_sums, self._seen_gradient)
        ]
        counts = [self._counts[g] for g in range(self.groups)]
        return combine_group_gradients(group_gradients, counts)

    def reset_if(self, condition) -> None:
        """Starts a new window after an optimizer step."""
        for sums in self._gradient_sums:
            for total in sums or ():
                total.assign(ops.where(condition, ops.zeros_like(total), total))
        self._counts.assign(ops.where(condition, ops.zeros_like(self._counts), self._counts))

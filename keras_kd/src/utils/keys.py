"""The keys and label values that batches share between the data and the step.

Here, not in the distiller, so that teacher caches and transfer sets do not
import the trainer for two strings and a number.
"""

TEACHER_LOGITS_KEY = "teacher_logits"
"""Key under which a dataset supplies precomputed teacher logits.

Batches of `({INPUTS_KEY: x, TEACHER_LOGITS_KEY: logits}, y)` train without
running the teacher (see `keras_kd.cache_teacher_outputs`).
"""

INPUTS_KEY = "inputs"
"""Key of the student's inputs in a batch that carries teacher logits
(`TEACHER_LOGITS_KEY`)."""

UNLABELED = -1
"""Sparse label that marks an unlabeled example (scikit-learn's convention).

One-hot rows of all zeros mean the same. An unlabeled example takes part in
the distillation loss only.
"""

OUTPUT_KINDS = ("logits", "probabilities")
"""What a model outputs (a teacher's `teacher_outputs`, an export's `outputs`)."""

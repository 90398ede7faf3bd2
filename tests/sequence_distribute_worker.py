"""Token-level distillation on one device and on two logical CPU devices.

Run in a fresh process by `tests/test_sequence_distribute.py` (logical
devices must be configured before TensorFlow initializes):

    python tests/sequence_distribute_worker.py OUTPUT.json

The two halves of every batch hold very different numbers of real tokens, so
a replica that averaged over its own tokens (instead of the global batch's)
would give a different result from one device. The "accumulated" scenario
also splits every batch into two micro-batches of 12 and 48 real tokens
(`gradient_accumulation_steps=2`), which must still equal one device's
batches of 8.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from two_cpus import two_cpu_strategy  # noqa: E402

STRATEGY, DEFAULT = two_cpu_strategy()

import keras  # noqa: E402

import keras_kd  # noqa: E402

VOCABULARY, LENGTH = 32, 12


def token_model(seed, width):
    keras.utils.set_random_seed(seed)
    token_ids = keras.Input((LENGTH,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((LENGTH,), dtype="bool", name="padding_mask")
    hidden = keras.layers.Embedding(VOCABULARY, width)(token_ids)
    hidden = keras.layers.Conv1D(width, 3, padding="causal", activation="relu")(hidden)
    logits = keras.layers.Dense(VOCABULARY)(hidden)
    return keras.Model({"token_ids": token_ids, "padding_mask": padding_mask}, logits)


def token_data(count=32):
    """In every batch of 8, examples 0-3 hold 3 real tokens and 4-7 all 12:
    one replica gets 12 real tokens, the other 48."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, VOCABULARY, size=(count, LENGTH)).astype("int32")
    lengths = np.where(np.arange(count) % 8 < 4, 3, LENGTH)
    mask = np.arange(LENGTH)[None, :] < lengths[:, None]
    tokens[~mask] = 0
    labels = np.roll(tokens, -1, axis=1)
    labels[:, :2] = keras_kd.UNLABELED  # a "prompt": soft loss only
    weights = mask.astype("float32")
    return {"token_ids": tokens, "padding_mask": mask}, labels, weights


def scenario(strategy, divergence, chunk_size, batch_size=8, accumulation=None,
             optimizer=lambda: keras.optimizers.Adam(1e-2)):
    x, y, w = token_data()
    with strategy.scope():
        teacher = token_model(0, width=16)
        student = token_model(1, width=8)
        distiller = keras_kd.Distiller(student, teacher)
        distiller.compile(
            optimizer=optimizer(),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
            divergence=divergence,
            chunk_size=chunk_size,
            gradient_accumulation_steps=accumulation,
            jit_compile=False,
        )
    history = distiller.fit(x, y, sample_weight=w, batch_size=batch_size, epochs=2,
                            shuffle=False, verbose=0)
    evaluation = distiller.evaluate(x, y, sample_weight=w, batch_size=8, verbose=0,
                                    return_dict=True)
    return {
        "weights": [v.tolist() for v in student.get_weights()],
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "evaluate": {k: float(v) for k, v in evaluation.items()},
    }


def main(output_path):
    results = {"replicas": STRATEGY.num_replicas_in_sync}
    for name, divergence, chunk_size in (("forward_kl", "forward_kl", None),
                                         ("jsd_chunked", "jsd", 5)):
        results[name] = {
            "one": scenario(DEFAULT, divergence, chunk_size),
            "mirrored": scenario(STRATEGY, divergence, chunk_size),
        }
    # Micro-batches of 4 with 2 accumulation steps on two replicas: the
    # micro-batches hold 12 and 48 real tokens, the replicas 6 and 24 each.
    # (SGD with momentum: Keras's Adam applies the embedding table's sparse
    # gradient of one batch lazily, while accumulated gradients are dense,
    # in Keras's own accumulation too.)
    momentum = lambda: keras.optimizers.SGD(0.5, momentum=0.9)  # noqa: E731
    results["accumulated"] = {
        "one": scenario(DEFAULT, "forward_kl", None, optimizer=momentum),
        "mirrored": scenario(STRATEGY, "forward_kl", None, batch_size=4, accumulation=2,
                             optimizer=momentum),
    }
    with open(output_path, "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main(sys.argv[1])

"""A distillation that `tests/test_resume.py` interrupts and resumes.

    python tests/resume_worker.py BACKUP_DIR OUTPUT.npz [--pause-at-epoch K]

With `--pause-at-epoch K`, the run prints "PAUSED" in the middle of epoch K
and waits there to be killed.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_kd  # noqa: E402
from keras_kd.src.models import models  # noqa: E402
from keras_kd.src.data import datasets

EPOCHS, N, BATCH = 4, 512, 64


class PauseMidEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.pause_epoch = epoch
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.pause_epoch and batch == 3:
            print("PAUSED", flush=True)
            time.sleep(600)


class EpochLog(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("backup_dir")
    parser.add_argument("output")
    parser.add_argument("--pause-at-epoch", type=int, default=None)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    (x, y), _ = datasets.load_fashion_mnist()
    x, y = x[:N], y[:N]
    teacher = models.mlp((64,), name="teacher")
    student = models.mlp((16,), name="student")
    distiller = keras_kd.Distiller(student, teacher)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                      alpha=0.3, temperature=3.0)
    log = EpochLog()
    callbacks = [keras.callbacks.BackupAndRestore(args.backup_dir), log]
    if args.pause_at_epoch is not None:
        callbacks.append(PauseMidEpoch(args.pause_at_epoch))
    history = distiller.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False,
                            verbose=0, callbacks=callbacks)
    np.savez(args.output, *student.get_weights())
    with open(args.output + ".json", "w") as f:
        json.dump({"epochs_run": log.epochs,
                   "loss": [float(v) for v in history.history["loss"]]}, f)


if __name__ == "__main__":
    main(sys.argv[1:])

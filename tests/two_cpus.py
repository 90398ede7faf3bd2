"""Two logical CPU devices and a `MirroredStrategy` over them.

Imported first by the distribute workers (`tests/*distribute_worker.py`),
which run in a fresh process because logical devices must be configured
before TensorFlow initializes; `run_worker` is the pytest side that starts
such a worker and reads back what it recorded.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_worker(script: str, output_dir: Path, timeout: int = 900) -> dict:
    """Runs `tests/<script> OUTPUT.json` in a fresh process; its JSON results."""
    output = Path(output_dir) / "results.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [sys.executable, str(ROOT / "tests" / script), str(output)],
        env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(output.read_text())


def two_cpu_strategy():
    """`(MirroredStrategy over /cpu:0 and /cpu:1, the default strategy)`.

    Must run before TensorFlow initializes its devices (before any op).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
    return (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
            tf.distribute.get_strategy())

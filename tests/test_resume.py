"""BackupAndRestore resumes a killed distillation; with determinism enabled
the result equals an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "resume_worker.py"


def command(backup, output, *extra):
    return [sys.executable, str(WORKER), str(backup), str(output), *extra]


def env():
    return dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")


def load(output):
    weights = np.load(output)
    return [weights[f"arr_{i}"] for i in range(len(weights.files))]


@pytest.mark.slow
def test_killed_distillation_resumes_and_matches_uninterrupted_run(tmp_path):
    interrupted = tmp_path / "interrupted.npz"
    process = subprocess.Popen(
        command(tmp_path / "backup", interrupted, "--pause-at-epoch", "2"),
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        for line in process.stdout:
            if line.strip() == "PAUSED":
                break
        # Killed in the middle of epoch 2 (0-based), without any clean-up.
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert not interrupted.exists()

    resumed = subprocess.run(command(tmp_path / "backup", interrupted), env=env(),
                             capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    # It resumed after the last completed epoch and finished the run.
    resumed_log = json.loads(Path(str(interrupted) + ".json").read_text())
    assert resumed_log["epochs_run"] == [2, 3]

    uninterrupted = tmp_path / "uninterrupted.npz"
    reference = subprocess.run(command(tmp_path / "backup2", uninterrupted), env=env(),
                               capture_output=True, text=True, timeout=900)
    assert reference.returncode == 0, reference.stderr[-4000:]
    reference_log = json.loads(Path(str(uninterrupted) + ".json").read_text())
    assert reference_log["epochs_run"] == [0, 1, 2, 3]

    for expected, actual in zip(load(uninterrupted), load(interrupted)):
        np.testing.assert_array_equal(actual, expected)
    np.testing.assert_array_equal(resumed_log["loss"], reference_log["loss"][2:])

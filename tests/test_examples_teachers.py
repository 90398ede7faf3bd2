"""The several-teachers and cached-teacher examples run end to end (--quick)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_example(name, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), "--quick", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_several_teachers_example_runs():
    out = _run_example("several_teachers.py")
    for name in ("vgg_teacher", "mlp_teacher", "small_vgg_teacher", "student alone",
                 "student from 3 teachers"):
        assert name in out, out
    assert out.count("test accuracy") == 5


@pytest.mark.slow
def test_cached_teacher_example_runs(tmp_path):
    out = _run_example("cached_teacher.py", "--cache-dir", str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["teacher_full.kdcache", "teacher_top-5.kdcache"]
    assert "1000 images x 2 views" in out, out
    for label in ("student alone", "live teacher", "cached float32", "cached top-5"):
        assert label in out, out
    assert "float32 5.12 GB, top-5 43.6 MB" in out

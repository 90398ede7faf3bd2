import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_feature_distillation_example_runs():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "feature_distillation.py"), "--quick",
         "--methods", "hint", "attention", "dkd"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "teacher:" in result.stdout
    for method in ("hint", "attention", "dkd"):
        assert f"| {method} | " in result.stdout

"""The example scripts run end to end with `--quick` (real data, tiny budget)."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    # Imported in-process (not a subprocess) to spare a second TensorFlow start.
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_hinton_mlp_quick(tmp_path, capsys):
    results = _load("hinton_mlp").main(["--quick", "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "student 2x800, distilled" in out and "T = 20" in out
    for key in ("teacher", "scratch", "distilled"):
        assert 0 <= results[f"{key}_errors"] <= 1000
        # One epoch on 2,000 images already beats chance (10%) by far.
        assert results[f"{key}_accuracy"] > 0.4
    assert (tmp_path / "report.md").is_file() and (tmp_path / "training_curves.png").is_file()


@pytest.mark.slow
def test_text_classification_quick(capsys):
    results = _load("text_classification").main(["--quick", "--dataset", "debian_packages"])
    out = capsys.readouterr().out
    assert results["corpus"] == "debian_packages"
    assert "teacher (Transformer)" in out and "student, distilled" in out
    assert results["student_parameters"] < results["teacher_parameters"] / 5
    for key in ("teacher", "scratch", "distilled"):
        assert 0.0 <= results[f"{key}_accuracy"] <= 1.0


@pytest.mark.slow
def test_distil_causal_lm_quick(capsys):
    pytest.importorskip("keras_hub")
    results = _load("distil_causal_lm").main(["--quick"])
    out = capsys.readouterr().out
    assert "student_distilled" in out and "test bits/byte" in out
    assert results["teacher_parameters"] >= 4 * results["student_parameters"]
    for key in ("teacher", "student_alone", "student_distilled"):
        # Bytes: 8 bits is a uniform guess; a few steps already do better.
        assert 0.0 < results[f"{key}_bits_per_token"] < 8.0

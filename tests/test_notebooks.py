"""The notebooks in examples/notebooks run top to bottom (small settings)."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "examples" / "notebooks"


def _execute(name: str, tmp_path: Path, monkeypatch) -> nbformat.NotebookNode:
    # The kernel inherits the environment: small settings, this checkout's
    # package, and a scratch directory for the files the notebook writes.
    monkeypatch.setenv("KERAS_KD_QUICK", "1")
    monkeypatch.setenv("KERAS_KD_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    return notebook


def _text(notebook) -> str:
    return "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


@pytest.mark.slow
def test_quickstart_notebook(tmp_path, monkeypatch):
    notebook = _execute("quickstart.ipynb", tmp_path, monkeypatch)
    text = _text(notebook)
    assert "quick=True" in text and "distilled student: test accuracy" in text
    assert (tmp_path / "report" / "report.md").is_file()
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2


@pytest.mark.slow
def test_distill_and_deploy_notebook(tmp_path, monkeypatch):
    notebook = _execute("distill_and_deploy.ipynb", tmp_path, monkeypatch)
    text = _text(notebook)
    assert (tmp_path / "student.tflite").stat().st_size > 1000
    assert (tmp_path / "student_int8.tflite").stat().st_size < (tmp_path / "student.tflite").stat().st_size
    assert "predicted:" in text and "int8     TFLite test accuracy" in text


def test_notebooks_are_committed_without_stale_outputs():
    # Outputs come only from real runs; committed notebooks carry none.
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), path.name

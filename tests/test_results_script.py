"""`benchmarks/results_table.py` runs end to end (`--quick`: real training on a
small Fashion-MNIST subset, in a subprocess), chooses on validation, writes
every row and the target check, and resumes without training again.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import results_table  # noqa: E402
from keras_kd.src.distiller.distiller import DEFAULT_ALPHA, DEFAULT_TEMPERATURE  # noqa: E402


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), KD_BENCH_THREADS="1")
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "results_table.py"), "--quick", *args],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


@pytest.mark.slow
def test_quick_run_writes_every_row_and_resumes(tmp_path):
    cache, output = tmp_path / "cache", tmp_path / "results"
    args = ("--students", "mlp", "--cache-dir", str(cache), "--output-dir", str(output))
    first = _run(*args)
    assert "training" in first
    payload = json.loads((output / "results_table.json").read_text())
    markdown = (output / "results_table.md").read_text()
    plan = payload["plan"]
    for setting in results_table.SETTINGS:
        for row in results_table.ROWS:
            records = payload["table"][f"mlp/{setting}/{row}"]
            # The teacher is one model; the live-teacher row runs seed 0 only.
            single = row in ("teacher", "fm-live")
            assert len(records) == (1 if single else len(plan["seeds"]))
            for record in records:
                assert 0.0 <= record["test"]["accuracy"] <= 1.0
                assert 0.0 <= record["val_accuracy"] <= 1.0
                assert record["test"]["errors"] == round(
                    (1 - record["test"]["accuracy"]) * plan["test_size"])
        choice = payload["choices"]["mlp"][setting]
        # The strongest student alone is the best candidate on validation.
        candidates = choice["best_alone_candidates"]
        assert choice["best_alone"] == max(candidates, key=candidates.get)
        best = payload["table"][f"mlp/{setting}/best-alone"][0]
        assert best["val_accuracy"] == pytest.approx(candidates[choice["best_alone"]])
        # Hinton KD's schedule is picked the same way, on validation.
        schedules = choice["kd_schedule_candidates"]
        assert set(schedules) == {f"{plan['short']} epochs", f"{plan['long']} epochs"}
        assert choice["kd_schedule"] == max(schedules, key=schedules.get)
        kd = payload["table"][f"mlp/{setting}/kd"][0]
        assert f"{kd['epochs']} epochs" == choice["kd_schedule"]
        assert kd["val_accuracy"] == pytest.approx(schedules[choice["kd_schedule"]])
        # The tuned KD row: T and alpha the grid's best on validation, then
        # its schedule, each on validation.
        grid = choice["kd_grid_candidates"]
        assert set(grid) == {f"T={t:g}, alpha={a:g}" for t, a in results_table.QUICK_KD_GRID}
        assert choice["kd_grid"] == max(grid, key=grid.get)
        tuned_schedules = choice["kd_tuned_schedule_candidates"]
        assert choice["kd_tuned_schedule"] == max(tuned_schedules, key=tuned_schedules.get)
        tuned = payload["table"][f"mlp/{setting}/kd-tuned"][0]
        # The grid's point at compile()'s defaults is the kd row's run (None: the defaults).
        temperature = DEFAULT_TEMPERATURE if tuned["temperature"] is None else tuned["temperature"]
        alpha = DEFAULT_ALPHA if tuned["alpha"] is None else tuned["alpha"]
        assert f"T={temperature:g}, alpha={alpha:g}" == choice["kd_grid"]
        assert f"{tuned['epochs']} epochs" == choice["kd_tuned_schedule"]
        assert tuned["val_accuracy"] == pytest.approx(tuned_schedules[choice["kd_tuned_schedule"]])
    # That point is trained once, as the kd row's short run, not again under
    # an explicit spec.
    kd_runs = [json.loads(path.read_text()) for path in cache.rglob("runs/*-kd-*.json")]
    assert kd_runs and not [r for r in kd_runs if (r["temperature"], r["alpha"]) == (
        DEFAULT_TEMPERATURE, DEFAULT_ALPHA)]
    # The report names the grid that was searched (`--quick`'s own).
    temperatures = sorted({t for t, _ in results_table.QUICK_KD_GRID})
    alphas = sorted({a for _, a in results_table.QUICK_KD_GRID})
    assert (f"grid T in {{{', '.join(f'{t:g}' for t in temperatures)}}} x "
            f"alpha in {{{', '.join(f'{a:g}' for a in alphas)}}}") in markdown
    # Function matching ignores labels: one run serves both settings.
    fm = {s: [r["val_accuracy"] for r in payload["table"][f"mlp/{s}/fm"]]
          for s in results_table.SETTINGS}
    assert fm["all-labels"] == fm["transfer"]
    assert payload["table"]["mlp/all-labels/fm"][0]["alpha"] == 0.0
    live = payload["table"]["mlp/all-labels/fm-live"][0]
    assert (live["method"], live["augmentation"], live["alpha"]) == ("live", "mixup", 0.0)
    # The KD row uses compile()'s defaults (no alpha or temperature passed).
    assert payload["table"]["mlp/all-labels/kd"][0]["alpha"] is None
    assert "mlp" in payload["picks"]
    for text in ("## How the settings were chosen", "Target check", "strongest student alone",
                 "## What was left out", "load average",
                 # _run sets KD_BENCH_THREADS=1: the report states the threads used.
                 "one thread per process"):
        assert text in markdown
    # A second run keeps every finished run: nothing is trained again.
    second = _run(*args)
    assert "training {" not in second
    again = json.loads((output / "results_table.json").read_text())
    assert again["summary"] == payload["summary"]


def test_unknown_student_is_rejected():
    with pytest.raises(SystemExit):
        results_table.parse_args(["--students", "resnet"])

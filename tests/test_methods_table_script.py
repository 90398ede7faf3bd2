"""The results-table and sweep scripts run end to end (`--quick`) and write
sane numbers: real training on a tiny Fashion-MNIST subset, in a subprocess.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import methods_table  # noqa: E402


def _run(script, *args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args],
        cwd=cwd, env=env, capture_output=True, text=True,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    output = tmp_path_factory.mktemp("results")
    _run("methods_table.py", "--cache-dir", str(cache), "--output-dir", str(output))
    return cache, output


@pytest.mark.slow
def test_methods_table_quick_writes_every_row_with_sane_values(quick_run):
    cache, output = quick_run
    payload = json.loads((output / "methods_table.json").read_text())
    markdown = (output / "methods_table.md").read_text()
    test_size = int(payload["budget"]["test_size"])
    ran = {record["row"] for record in payload["records"]}
    assert ran | set(payload["skipped"]) == set(methods_table.ROW_IDS)
    for row in ("teacher", "scratch", "kd", "kd-live", "kd-transfer", "ensemble-teacher",
                "ensemble",
                "hinton-teacher", "hinton-800-scratch", "hinton-800-kd", "mlp-800-kd-cnn",
                "mlp-800-kd-cnn-transfer", "hinton-30-scratch", "hinton-30-t2.5",
                "hinton-30-t4", "hints", "at", "dkd"):
        assert row in ran
        assert f"(`{row}`)" in markdown
    for row_id, reason in payload["skipped"].items():
        assert f"not run: {reason}" in markdown
    for record in payload["records"]:
        assert record["seed"] == 0
        assert 0.0 <= record["accuracy"] <= 1.0
        assert record["errors"] == round((1.0 - record["accuracy"]) * test_size)
        assert 0.0 <= record["ece"] <= 1.0
        assert 0.0 <= record["train_accuracy"] <= 1.0
        assert record["params"] > 0 and record["train_seconds"] > 0
        if record["row"] in ("teacher", "hinton-teacher", "ensemble-teacher"):
            assert record["agreement"] is None
        else:
            assert 0.0 <= record["agreement"] <= 1.0
    by_row = {r["row"]: r for r in payload["records"]}
    # Cached and live teachers see the same augmented views: same student.
    assert abs(by_row["kd"]["accuracy"] - by_row["kd-live"]["accuracy"]) <= 0.01
    assert by_row["scratch"]["params"] == by_row["kd"]["params"] == by_row["kd-transfer"]["params"]
    assert by_row["hinton-teacher"]["params"] == 2 * 1200 + 784 * 1200 + 1200 * 1200 + 1200 * 10 + 10
    assert by_row["ensemble-teacher"]["params"] == 3 * by_row["teacher"]["params"]
    assert payload["summary"]["scratch"]["time_ratio"] == pytest.approx(1.0)
    assert "## Target check" in markdown
    # Teachers and their logits were cached for the next run.
    assert len(list((cache / "teachers").glob("*.keras"))) == 4


@pytest.mark.slow
def test_sweeps_quick_reuses_the_cache_and_plots(quick_run):
    cache, output = quick_run
    _run("sweeps.py", "--cache-dir", str(cache), "--output-dir", str(output),
         "--row", "kd", "--alpha", "0.5", "--temperature", "2",
         "--temperatures", "2", "--alphas", "1.0")
    payload = json.loads((output / "sweeps.json").read_text())
    assert payload["row"] == "kd"
    assert [(r["sweep"], r["temperature"], r["alpha"]) for r in payload["runs"]] == [
        ("temperature", 2.0, 0.5), ("alpha", 2.0, 1.0)]
    table = json.loads((output / "methods_table.json").read_text())
    scratch = next(r for r in table["records"] if r["row"] == "scratch")
    # The reference line is the scratch row, trained again with the same seed.
    assert payload["scratch_accuracy"] == pytest.approx(scratch["accuracy"], abs=0.01)
    # alpha = 1 through the Distiller is the student trained on labels alone.
    assert payload["runs"][1]["accuracy"] == pytest.approx(scratch["accuracy"], abs=0.01)
    for name in ("sweep_temperature.png", "sweep_alpha.png"):
        assert (output / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # No teacher was trained again.
    assert len(list((cache / "teachers").glob("*.keras"))) == 4


def test_unknown_row_id_is_rejected():
    with pytest.raises(SystemExit, match="Unknown row ids"):
        methods_table.main(["--quick", "--rows", "no-such-row"])

"""Temperature and alpha sweeps of Hinton KD on Fashion-MNIST, as plots.

Distils the results table's CNN student from the cached CNN teacher as one of
its rows does (`--row`: `kd-transfer`, the default, on the 10k labelled and
50k unlabelled images, or `kd`, on the labelled images only; same data,
schedule and teacher cache as `methods_table.py`) at T in {1, 2, 4, 8, 20}
(alpha fixed) and at several alphas (T fixed), trains the same student alone
as the reference line, and writes `sweep_temperature.png`, `sweep_alpha.png`,
`sweeps.md` and `sweeps.json` to `benchmarks/results/`.

    PYTHONPATH=. python benchmarks/sweeps.py
    PYTHONPATH=. python benchmarks/sweeps.py --plot-only   # redraw from sweeps.json

`alpha` weighs the hard-label loss, `1 - alpha` the soft targets. With `--row
kd`, alpha = 1 is the student trained on the labels alone (through the same
`Distiller`); on the transfer set it is not (5/6 of each batch is unlabelled).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kd_bench  # noqa: E402
import methods_table  # noqa: E402
from kd_bench import log  # noqa: E402

TEMPERATURES = (1.0, 2.0, 4.0, 8.0, 20.0)
ALPHAS = (0.0, 0.1, 0.5, 0.9)
SWEEP_ROWS = ("kd-transfer", "kd")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--temperatures", type=float, nargs="+", default=list(TEMPERATURES))
    parser.add_argument("--alphas", type=float, nargs="+", default=list(ALPHAS))
    parser.add_argument("--row", choices=SWEEP_ROWS, default=SWEEP_ROWS[0],
                        help="the results-table row whose T and alpha are swept")
    parser.add_argument("--alpha", type=float, default=0.1,
                        help="alpha of the temperature sweep")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="temperature of the alpha sweep")
    parser.add_argument("--student-epochs", type=int, default=None)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--plot-only", action="store_true")
    return parser.parse_args(argv)


def sweep_points(args):
    """`(sweep, temperature, alpha)` of every run, without repeats."""
    points = [("temperature", t, args.alpha) for t in args.temperatures]
    points += [("alpha", args.temperature, a) for a in args.alphas]
    return points


def plot(payload: dict, output_dir: Path) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    teacher = payload.get("teacher_accuracy")
    paths = []
    for sweep, xlabel, fixed in (
        ("temperature", "temperature T", f"alpha = {payload['alpha']:g}"),
        ("alpha", "alpha (weight of the hard-label loss)", f"T = {payload['temperature']:g}"),
    ):
        key = "temperature" if sweep == "temperature" else "alpha"
        runs = [r for r in payload["runs"] if r["sweep"] == sweep]
        if not runs:
            continue
        xs = sorted({r[key] for r in runs})
        accs = [[100 * r["accuracy"] for r in runs if r[key] == x] for x in xs]
        means = np.array([np.mean(a) for a in accs])
        stds = np.array([np.std(a, ddof=1) if len(a) > 1 else 0.0 for a in accs])
        figure, axis = plt.subplots(figsize=(6, 4))
        axis.errorbar(xs, means, yerr=stds, marker="o", capsize=3,
                      label=f"distilled CNN student, `{payload.get('row', 'kd')}` ({fixed})")
        if teacher is not None:
            axis.axhline(100 * teacher, color="black", linestyle="--",
                         label=f"CNN teacher ({100 * teacher:.2f}%)")
        scratch = payload.get("scratch_accuracy")
        if scratch is not None:
            axis.axhline(100 * scratch, color="tab:red", linestyle=":",
                         label=f"student alone ({100 * scratch:.2f}%)")
        if sweep == "temperature":
            axis.set_xscale("log")
            axis.set_xticks(xs)
            axis.set_xticklabels([f"{x:g}" for x in xs])
        axis.set_xlabel(xlabel)
        axis.set_ylabel("test accuracy (%)")
        seeds = len(payload["seeds"])
        axis.set_title(f"Fashion-MNIST, {payload['train_size']:,} training images, "
                       f"{payload['student_epochs']} epochs, {seeds} seed{'s' * (seeds > 1)}",
                       fontsize=9)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        figure.tight_layout()
        path = output_dir / f"sweep_{sweep}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        paths.append(path)
    return paths


#: How the sweep's points are read (said in its results file).
SWEEPS_SETTINGS_NOTE = (
    'How the settings were chosen: each point is read on the test set (one seed), so '
    'these curves show sensitivity and are not a way to pick T or alpha; '
    '`results_table.md` picks settings on a validation split. The baseline is the student'
    ' alone of `methods_table.md`.'
)


def write_markdown(payload: dict, output_dir: Path) -> Path:
    lines = [
        "# Temperature and alpha sweeps (Hinton KD, CNN student, cached CNN teacher)",
        "",
        f"Produced by `{payload['command']}`. Each point is the results table's "
        f"`{payload.get('row', 'kd')}` row (same data, student, schedule and teacher as "
        "`methods_table.md`) with another T or alpha. alpha weighs the hard-label loss, "
        "1 - alpha the soft targets.",
        "",
        SWEEPS_SETTINGS_NOTE,
        "",
        "![temperature sweep](sweep_temperature.png) ![alpha sweep](sweep_alpha.png)",
        "",
        "| Sweep | T | alpha | Seeds | Test accuracy (%) | ECE (%) | Agreement (%) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    grouped = {}
    for run in payload["runs"]:
        grouped.setdefault((run["sweep"], run["temperature"], run["alpha"]), []).append(run)
    for (sweep, temperature, alpha), runs in grouped.items():
        acc = kd_bench.mean_std([r["accuracy"] for r in runs])
        ece = kd_bench.mean_std([r["ece"] for r in runs])
        agree = kd_bench.mean_std([r["agreement"] for r in runs])
        lines.append(
            f"| {sweep} | {temperature:g} | {alpha:g} | {len(runs)} "
            f"| {100 * acc[0]:.2f} ± {100 * acc[1]:.2f} | {100 * ece[0]:.2f} "
            f"| {100 * agree[0]:.1f} |"
        )
    if payload.get("scratch_accuracy") is not None:
        lines += ["", "The same student trained alone on the labelled images (the "
                      f"`scratch` row, seeds {', '.join(map(str, payload['seeds']))}): "
                      f"{100 * payload['scratch_accuracy']:.2f}%."]
    if payload.get("teacher_accuracy") is not None:
        lines += ["", f"CNN teacher (seed {payload['seeds'][0]}): "
                      f"{100 * payload['teacher_accuracy']:.2f}%."]
    path = output_dir / "sweeps.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None):
    args = parse_args(argv)
    table_args = methods_table.parse_args(
        (["--quick"] if args.quick else [])
        + (["--cache-dir", str(args.cache_dir)] if args.cache_dir else [])
        + (["--student-epochs", str(args.student_epochs)] if args.student_epochs else [])
        + (["--train-size", str(args.train_size)] if args.train_size else [])
        + (["--test-size", str(args.test_size)] if args.test_size else [])
    )
    budget = methods_table.budget_from_args(table_args)
    output_dir = args.output_dir or (
        Path(budget.cache_dir) / "quick_results" if args.quick else kd_bench.DEFAULT_RESULTS_DIR
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = output_dir / "sweeps.json"
    if args.plot_only:
        payload = json.loads(json_path.read_text())
        print(*plot(payload, output_dir), write_markdown(payload, output_dir), sep="\n")
        return
    kd_bench.threads_from_env()
    context = methods_table.Context(budget)
    payload = {
        "command": " ".join(["PYTHONPATH=. python", "benchmarks/sweeps.py", *sys.argv[1:]]),
        "row": args.row,
        "seeds": args.seeds,
        "alpha": args.alpha,
        "temperature": args.temperature,
        "train_size": budget.train_size,
        "student_epochs": budget.student_epochs,
        "budget": {k: str(v) for k, v in asdict(budget).items() if k != "cache_dir"},
        "runs": [],
    }
    base = replace(methods_table.ROWS[methods_table.ROW_IDS.index(args.row)], id="sweep")
    scratch_row = methods_table.ROWS[methods_table.ROW_IDS.index("scratch")]
    start = time.perf_counter()
    scratch = []
    for seed in args.seeds:
        scratch.append(methods_table.run_row(scratch_row, seed, args.seeds, context)["accuracy"])
        log(f"student alone, seed {seed}: {scratch[-1]:.4f}")
    payload["scratch_accuracy"] = kd_bench.mean_std(scratch)[0]
    done = {}
    for sweep, temperature, alpha in sweep_points(args):
        for seed in args.seeds:
            point = (temperature, alpha, seed)
            if point not in done:
                row = replace(base, temperature=temperature, alpha=alpha)
                done[point] = methods_table.run_row(row, seed, args.seeds, context)
                log(f"T={temperature:g} alpha={alpha:g} seed {seed}: "
                    f"{done[point]['accuracy']:.4f}")
            payload["runs"].append({**done[point], "sweep": sweep,
                                    "temperature": temperature, "alpha": alpha})
        teacher_logits = kd_bench.teacher_logits("cnn", args.seeds[0], budget, context.data, "test")
        payload["teacher_accuracy"] = float(
            (teacher_logits.argmax(-1) == context.test_labels).mean()
        )
        json_path.write_text(json.dumps(payload, indent=1))
        plot(payload, output_dir)
        write_markdown(payload, output_dir)
    log(f"sweeps done in {time.perf_counter() - start:.0f}s")
    print((output_dir / "sweeps.md").read_text())


if __name__ == "__main__":
    main()

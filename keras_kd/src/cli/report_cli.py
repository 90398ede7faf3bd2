"""`keras-kd report`: compare a distilled student with its teacher.

Writes per-class accuracy, confusion matrices, teacher-student disagreements,
calibration and training curves as PNGs, plus `report.md`
(`keras_kd.report`).
"""

from __future__ import annotations

import argparse

from keras_kd.src.cli import data as cli_data

#: Where the report goes unless `--output-dir` says otherwise.
DEFAULT_OUTPUT_DIR = "kd_report"


def run(args) -> int:
    import keras

    import keras_kd  # registers the serializable classes, for load_model

    if args.distiller is not None:
        if args.teacher is not None or args.student is not None:
            raise ValueError("Pass either `--distiller` or both `--teacher` and `--student`, not both.")
        teacher, student = None, keras.saving.load_model(args.distiller)
    elif args.teacher is not None and args.student is not None:
        teacher = keras.saving.load_model(args.teacher)
        student = keras.saving.load_model(args.student)
    else:
        raise ValueError("Give the models: `--distiller D.keras`, or `--teacher T.keras --student S.keras`.")
    data, names = cli_data.labelled_test_data(args.data, args.x, args.y, args.data_dir)
    data = cli_data.limit_examples(data, args.limit)
    if args.class_names:
        names = [name.strip() for name in args.class_names.split(",")]
    result = keras_kd.report(
        teacher, student, data, class_names=names, history=args.history,
        output_dir=args.output_dir, batch_size=args.batch_size, num_bins=args.num_bins,
        verbose=args.verbose,
    )
    from keras_kd.src.report.report import _percent as percent

    print(
        f"teacher accuracy {percent(result.teacher_accuracy)}, student accuracy "
        f"{percent(result.student_accuracy)}, agreement {percent(result.agreement)}, "
        f"ECE teacher {percent(result.teacher_ece)} / student {percent(result.student_ece)}"
    )
    print(f"wrote {result.files['summary']}")
    return 0


def _verbosity(value: str):
    """`--verbose`: "auto", 0, 1 or 2."""
    if value == "auto":
        return value
    if value in ("0", "1", "2"):
        return int(value)
    raise argparse.ArgumentTypeError(f"must be auto, 0, 1 or 2 (received {value!r})")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="Compare a distilled student with its teacher: plots and a Markdown summary.",
        description="Writes per-class accuracy, confusion matrices, teacher-student "
        "disagreements, calibration and training curves as PNGs plus report.md.",
    )
    models = parser.add_argument_group("models (.keras files)")
    models.add_argument("--distiller", help="A saved keras_kd.Distiller (holds teacher and student).")
    models.add_argument("--teacher", help="A saved teacher model.")
    models.add_argument("--student", help="A saved student model.")
    data = parser.add_argument_group("evaluation data")
    data.add_argument("--data", help=f"A dataset name: {', '.join(cli_data.BUILTIN_DATA)} "
                                     "(its test split).")
    data.add_argument("--data-dir", default=None,
                      help="Directory holding the Fashion-MNIST .gz files.")
    data.add_argument("--x", help="Inputs as a .npy file (or a .npz with 'x' and 'y').")
    data.add_argument("--y", help="Labels as a .npy file (class indices or one-hot).")
    data.add_argument("--limit", type=int, help="Use the first N examples only.")
    parser.add_argument("--class-names", help="Comma-separated class names.")
    parser.add_argument("--history", help="A JSON file of History.history, for training curves.")
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR, help="Where to write (default: %(default)s).")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-bins", type=int, default=15, help="Confidence bins for calibration.")
    parser.add_argument(
        "--verbose", type=_verbosity, default="auto",
        help="auto (default, same as 1), 0 (silent), 1 (progress bar over the model passes) "
        "or 2 (one line when they are done).",
    )
    parser.set_defaults(run=run)

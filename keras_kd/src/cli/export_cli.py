"""`keras-kd export`: export a saved student (or Distiller) for serving.

Examples:

    keras-kd export distiller.keras student.tflite --quantization int8 --data fashion_mnist
    keras-kd export student.keras student_savedmodel --format saved_model

MODEL is a `.keras` file holding a `keras_kd.Distiller` (its student is
exported) or a plain Keras model. Calibration and verification inputs come
from `--data fashion_mnist` (calibration: the first training images;
verification: the test set) or from `.npy` files (inputs) / `.npz` files
(arrays `x` and, optionally, labels `y`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_kd.src.cli import data as cli_data


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="Export a student to SavedModel or LiteRT/TFLite and verify it.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL.keras",
                        help="A saved Distiller or Keras model (.keras).")
    parser.add_argument("output", metavar="OUT",
                        help="The .tflite file or SavedModel directory to write.")
    parser.add_argument("--format", choices=("saved_model", "tflite"), default=None,
                        help="Default: tflite when OUT ends in .tflite, else saved_model.")
    parser.add_argument("--quantization", choices=("none", "float16", "dynamic", "int8"),
                        default="none", help="TFLite quantization (default: none, float32).")
    parser.add_argument("--int8-io", action="store_true",
                        help="With int8: int8 input and output tensors too.")
    parser.add_argument("--outputs", choices=("logits", "probabilities"), default="logits",
                        help="What the exported model returns (default: logits).")
    parser.add_argument("--data", choices=cli_data.BUILTIN_DATA, default=None,
                        help="Built-in data for calibration (training images) and "
                             "verification (test set).")
    parser.add_argument("--data-dir", default=None,
                        help="Directory holding the Fashion-MNIST .gz files.")
    parser.add_argument("--representative-data", default=None, metavar="FILE",
                        help="Calibration inputs for int8 (.npy, or .npz with 'x').")
    parser.add_argument("--verification-data", default=None, metavar="FILE",
                        help="Held-out inputs (.npy, or .npz with 'x' and optional 'y').")
    parser.add_argument("--num-calibration-examples", type=int, default=500,
                        help="At most this many calibration examples (default: 500).")
    parser.add_argument("--no-verify", action="store_true",
                        help="Skip the parity check against the Keras model.")
    parser.set_defaults(run=run)


def run(args) -> int:
    import keras

    import keras_kd

    if not Path(args.model).is_file():
        raise FileNotFoundError(f"MODEL: no such file '{args.model}'.")
    model_file, output = Path(args.model).resolve(), Path(args.output).resolve()
    if output == model_file or output in model_file.parents:
        # Replacing OUT would delete the very model being exported (and,
        # with it, whatever sits next to it); `export` refuses non-SavedModel
        # directories too, but this says what is really wrong.
        raise ValueError(
            f"OUT '{args.output}' contains MODEL '{args.model}': exporting there "
            "would delete the model being exported. Expected a new path that "
            "does not contain MODEL, e.g. 'student_savedmodel' or 'student.tflite'."
        )
    model = keras.saving.load_model(args.model, compile=False)
    quantization = None if args.quantization == "none" else args.quantization
    representative = verification = None
    if args.data is not None:
        (x_train, _), (x_test, y_test), _ = cli_data.load_builtin(args.data, args.data_dir)
        representative = x_train[: args.num_calibration_examples]
        verification = (x_test, y_test)
    if args.representative_data:
        representative = cli_data.load_array_file(args.representative_data, "--representative-data")
    if args.verification_data:
        verification = cli_data.load_array_file(args.verification_data, "--verification-data")
    if quantization != "int8":
        # Calibration inputs only matter to int8; `--data` also serves others.
        if args.representative_data:
            raise ValueError(
                "--representative-data is only used with --quantization int8. "
                f"Received: --quantization {args.quantization}."
            )
        representative = None
    keras_kd.export(
        model,
        args.output,
        format=args.format,
        quantization=quantization,
        representative_data=representative,
        int8_io=args.int8_io,
        outputs=args.outputs,
        verify=not args.no_verify,
        verification_data=verification,
        num_calibration_examples=args.num_calibration_examples,
    )
    return 0

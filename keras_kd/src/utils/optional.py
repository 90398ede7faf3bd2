"""Optional dependencies, imported on first use with an error that says
which extra installs them.

The core install (`pip install keras-kd`) pulls only what the Distiller
needs: TensorFlow, Keras and NumPy. Each extra adds one capability:
`[report]` matplotlib, `[export]` ai-edge-litert (LiteRT), `[tune]`
KerasTuner, `[datasets]` tensorflow-datasets, `[lm]` and `[text]`
keras-hub; `[all]` all of them.
"""

import importlib
from types import ModuleType

# Module -> (pip extra, what keras_kd uses it for).
EXTRAS = {
    "matplotlib": ("report", "draws the report's figures"),
    "ai_edge_litert": ("export", "runs and checks LiteRT (.tflite) files"),
    "keras_tuner": ("tune", "searches distillation settings"),
    "tensorflow_datasets": ("datasets", "downloads datasets from TFDS"),
    "keras_hub": ("lm", "provides the language models, BERT encoders and tokenizers"),
}


def require(module: str) -> ModuleType:
    """Imports `module` (e.g. `"matplotlib.figure"`), or raises an
    `ImportError` naming the extra that installs it.

    Example:

    >>> require("numpy").__name__
    'numpy'
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        if top not in EXTRAS or (error.name or "").split(".")[0] != top:
            raise
        extra, purpose = EXTRAS[top]
        raise ImportError(
            f"{top} {purpose} here, and it is not installed. Install it with "
            f"`pip install \"keras-kd[{extra}]\"` (or `pip install \"keras-kd[all]\"`)."
        ) from error

"""keras-kd: knowledge distillation for Keras 3.

The public API lives here and in the namespaces `keras_kd.augment`,
`callbacks`, `datasets`, `evaluation`, `models`, `schedules` and
`text_datasets`. The implementation is in `keras_kd.src`, by concept (see
ARCHITECTURE.md); its module layout is not part of the API.
"""

# Public namespaces, as `keras.callbacks` is one.
from keras_kd import augment  # noqa: F401
from keras_kd import callbacks  # noqa: F401
from keras_kd import datasets  # noqa: F401
from keras_kd import evaluation  # noqa: F401
from keras_kd import models  # noqa: F401
from keras_kd import schedules  # noqa: F401
from keras_kd import text_datasets  # noqa: F401
from keras_kd.src.augment.augment import CutMix, MixUp
from keras_kd.src.data.cache import (
    TeacherCache,
    cache_storage_bytes,
    cache_teacher_outputs,
    load_teacher_cache,
    read_teacher_cache_header,
    rebuild_top_k_logits,
)
from keras_kd.src.data.lm_cache import (
    cache_lm_teacher_outputs,
    lm_cache_storage_bytes,
    load_lm_cache,
)
from keras_kd.src.data.text_datasets import (
    count_words,
    load_debian_unlabelled,
    load_python_docstrings,
    python_source_texts,
)
from keras_kd.src.data.transfer import mix_transfer_set
from keras_kd.src.distiller.distiller import Distiller
from keras_kd.src.export.export import ExportResult, ParityError, ParityReport, export, run_tflite
from keras_kd.src.export.quantization import (
    ActivationQuantizer,
    QuantizedEmbedding,
    QuantizedKernel,
    QuantizedMaskedAveragePooling1D,
    quantization_aware,
)
from keras_kd.src.models.causal_lm import (
    OnPolicyBatches,
    check_causal_lm_pair,
    continuation_batch,
    generate_tokens,
    sequence_level_dataset,
)
from keras_kd.src.report.report import DistillationReport, report
from keras_kd.src.terms.divergences import (
    distillation_divergence,
    divergence_from_log_probabilities,
)
from keras_kd.src.terms.keras_distillation import (
    KerasDistillationLoss,
    KerasFeatureDistillation,
    KerasLogitsDistillation,
)
from keras_kd.src.terms.losses import (
    DistillationKLDivergence,
    distillation_kl_divergence,
    soft_targets_log_probabilities,
)
from keras_kd.src.terms.terms import (
    AttentionTransfer,
    DecoupledKD,
    DistillationTerm,
    FeatureTerm,
    HardLabelLoss,
    HintLoss,
    HintonKD,
)
from keras_kd.src.terms.transformer_terms import (
    AttentionDistillation,
    EmbeddingDistillation,
    HiddenStateDistillation,
    attention_kl_divergence,
    check_vocabulary,
    layer_map,
    masked_mean_squared_error,
    transformer_layer_names,
)
from keras_kd.src.tuning.tuning import TuneResult, tune
from keras_kd.src.utils.keys import INPUTS_KEY, TEACHER_LOGITS_KEY, UNLABELED

__version__ = "0.1.0"

__all__ = [
    "ActivationQuantizer",
    "AttentionDistillation",
    "AttentionTransfer",
    "CutMix",
    "MixUp",
    "OnPolicyBatches",
    "DecoupledKD",
    "DistillationKLDivergence",
    "DistillationReport",
    "DistillationTerm",
    "EmbeddingDistillation",
    "Distiller",
    "ExportResult",
    "FeatureTerm",
    "HardLabelLoss",
    "HiddenStateDistillation",
    "HintLoss",
    "HintonKD",
    "KerasDistillationLoss",
    "KerasFeatureDistillation",
    "KerasLogitsDistillation",
    "INPUTS_KEY",
    "ParityError",
    "ParityReport",
    "QuantizedEmbedding",
    "QuantizedKernel",
    "QuantizedMaskedAveragePooling1D",
    "TEACHER_LOGITS_KEY",
    "TeacherCache",
    "TuneResult",
    "UNLABELED",
    "cache_storage_bytes",
    "cache_lm_teacher_outputs",
    "cache_teacher_outputs",
    "check_causal_lm_pair",
    "continuation_batch",
    "attention_kl_divergence",
    "augment",
    "callbacks",
    "check_vocabulary",
    "count_words",
    "distillation_divergence",
    "distillation_kl_divergence",
    "divergence_from_log_probabilities",
    "export",
    "generate_tokens",
    "layer_map",
    "lm_cache_storage_bytes",
    "load_debian_unlabelled",
    "load_lm_cache",
    "load_python_docstrings",
    "load_teacher_cache",
    "masked_mean_squared_error",
    "mix_transfer_set",
    "python_source_texts",
    "quantization_aware",
    "read_teacher_cache_header",
    "rebuild_top_k_logits",
    "report",
    "run_tflite",
    "schedules",
    "sequence_level_dataset",
    "soft_targets_log_probabilities",
    "transformer_layer_names",
    "tune",
]

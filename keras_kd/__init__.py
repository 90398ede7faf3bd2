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
from keras_kd.src.augment.augment import CutMix
from keras_kd.src.augment.augment import MixUp
from keras_kd.src.data.cache import TeacherCache
from keras_kd.src.models.causal_lm import OnPolicyBatches
from keras_kd.src.models.causal_lm import check_causal_lm_pair
from keras_kd.src.models.causal_lm import continuation_batch
from keras_kd.src.models.causal_lm import generate_tokens
from keras_kd.src.models.causal_lm import sequence_level_dataset
from keras_kd.src.data.cache import cache_storage_bytes
from keras_kd.src.data.cache import cache_teacher_outputs
from keras_kd.src.data.cache import load_teacher_cache
from keras_kd.src.data.cache import read_teacher_cache_header
from keras_kd.src.data.cache import rebuild_top_k_logits
from keras_kd.src.utils.keys import INPUTS_KEY
from keras_kd.src.utils.keys import TEACHER_LOGITS_KEY
from keras_kd.src.utils.keys import UNLABELED
from keras_kd.src.distiller.distiller import Distiller
from keras_kd.src.export.export import ExportResult
from keras_kd.src.export.export import ParityError
from keras_kd.src.export.export import ParityReport
from keras_kd.src.export.export import export
from keras_kd.src.export.export import run_tflite
from keras_kd.src.terms.keras_distillation import KerasDistillationLoss
from keras_kd.src.terms.keras_distillation import KerasFeatureDistillation
from keras_kd.src.terms.keras_distillation import KerasLogitsDistillation
from keras_kd.src.data.lm_cache import cache_lm_teacher_outputs
from keras_kd.src.data.lm_cache import lm_cache_storage_bytes
from keras_kd.src.data.lm_cache import load_lm_cache
from keras_kd.src.terms.losses import DistillationKLDivergence
from keras_kd.src.export.quantization import ActivationQuantizer
from keras_kd.src.export.quantization import QuantizedEmbedding
from keras_kd.src.export.quantization import QuantizedKernel
from keras_kd.src.export.quantization import QuantizedMaskedAveragePooling1D
from keras_kd.src.export.quantization import quantization_aware
from keras_kd.src.terms.divergences import distillation_divergence
from keras_kd.src.terms.divergences import divergence_from_log_probabilities
from keras_kd.src.terms.losses import distillation_kl_divergence
from keras_kd.src.terms.losses import soft_targets_log_probabilities
from keras_kd.src.report.report import DistillationReport
from keras_kd.src.report.report import report
from keras_kd.src.terms.terms import AttentionTransfer
from keras_kd.src.terms.terms import DecoupledKD
from keras_kd.src.terms.terms import DistillationTerm
from keras_kd.src.terms.terms import FeatureTerm
from keras_kd.src.terms.terms import HardLabelLoss
from keras_kd.src.terms.terms import HintLoss
from keras_kd.src.terms.terms import HintonKD
from keras_kd.src.data.text_datasets import count_words
from keras_kd.src.data.text_datasets import load_debian_unlabelled
from keras_kd.src.data.text_datasets import load_python_docstrings
from keras_kd.src.data.text_datasets import python_source_texts
from keras_kd.src.data.transfer import mix_transfer_set
from keras_kd.src.terms.transformer_terms import AttentionDistillation
from keras_kd.src.terms.transformer_terms import EmbeddingDistillation
from keras_kd.src.terms.transformer_terms import HiddenStateDistillation
from keras_kd.src.terms.transformer_terms import attention_kl_divergence
from keras_kd.src.terms.transformer_terms import check_vocabulary
from keras_kd.src.terms.transformer_terms import layer_map
from keras_kd.src.terms.transformer_terms import masked_mean_squared_error
from keras_kd.src.terms.transformer_terms import transformer_layer_names
from keras_kd.src.tuning.tuning import TuneResult
from keras_kd.src.tuning.tuning import tune

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

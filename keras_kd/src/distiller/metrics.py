"""The distiller's compiled metrics: scored on labelled examples only."""

from keras import ops

from keras_kd.src import keras_compat


class LabelMaskedMetrics(keras_compat.CompileMetrics):
    """Compiled metrics that leave unlabeled examples out.

    `metrics` are weighted by the label mask only (they ignore sample
    weights, as in Keras); `weighted_metrics` by the mask times the sample
    weights.
    """

    def update_state(self, y_true, y_pred, sample_weight=None, label_mask=None):
        if not self.built:
            self.build(y_true, y_pred)
        y_true = keras_compat.flatten_targets(self, y_true)
        y_pred = keras_compat.flatten_targets(self, y_pred)
        flat_metrics, flat_weighted_metrics = keras_compat.metric_lists(self)
        weighted = label_mask
        if sample_weight is not None:
            sample_weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
            weighted = sample_weight if label_mask is None else label_mask * sample_weight
        for metrics, y_t, y_p in zip(flat_metrics, y_true, y_pred):
            if metrics:
                metrics.update_state(y_t, y_p, sample_weight=label_mask)
        for metrics, y_t, y_p in zip(flat_weighted_metrics, y_true, y_pred):
            if metrics:
                metrics.update_state(y_t, y_p, sample_weight=weighted)

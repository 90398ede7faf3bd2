"""Distillation terms and the math they share.

`terms` (the `DistillationTerm` protocol, Hinton KD, hints),
`losses` and `divergences` (pure functions), `features` (feature
extractors), `transformer_terms` (TinyBERT/MiniLM terms),
`keras_distillation` (keras.distillation's losses as terms).
"""

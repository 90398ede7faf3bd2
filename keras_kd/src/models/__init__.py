"""Reference students and teachers, and keras-hub causal LMs.

`models` (image), `text_models` (text), `causal_lm` (keras-hub pairs,
on-policy and sequence-level distillation).
"""

"""The Distiller: a `keras.Model` whose one train step serves every teacher kind.

`distiller` (the model and its step), `positions` (outputs of any rank as
weighted rows), `accumulation` (exact gradient accumulation), `checks`
(bad input refused before and during training).
"""

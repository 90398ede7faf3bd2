"""Consistent augmentation inside the train step (MixUp, CutMix, policies).
"""

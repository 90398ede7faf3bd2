"""Export of distilled students: SavedModel, LiteRT, int8 and QAT.

`export` (formats and parity checks), `quantization` (quantization-aware
students).
"""

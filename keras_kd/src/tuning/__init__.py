"""KerasTuner search over distillation settings.
"""

"""The distillation report and the evaluation it is built on.
"""

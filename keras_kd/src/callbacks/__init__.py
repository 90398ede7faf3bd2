"""Callbacks and per-epoch schedules for the terms.
"""

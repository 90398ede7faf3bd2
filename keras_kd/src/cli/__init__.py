"""The `keras-kd` command line: demo, export and report.
"""

"""keras_kd's implementation, one subpackage per concept (see ARCHITECTURE.md).

Import the public API from `keras_kd`; this layout is not part of it.
"""

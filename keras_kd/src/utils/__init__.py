"""Small helpers shared by the subpackages (atomic file writes).
"""

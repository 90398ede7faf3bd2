"""Teacher data: cached teacher outputs, transfer sets and the datasets.

`cache` and `lm_cache` (teacher outputs on disk), `transfer` (transfer
sets), `datasets` and `text_datasets` (real data, offline).
"""

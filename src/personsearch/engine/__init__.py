"""Training engine: ``trainer`` (step loop), ``hooks`` (method / lr / eval / logging /
checkpoint), ``schedule`` (warm-up + step lr), ``checkpoint`` (atomic save, safe load,
``load_model``), ``logging`` (metrics.jsonl, progress bar).

Import the submodules directly; this package imports nothing heavy on purpose.
"""

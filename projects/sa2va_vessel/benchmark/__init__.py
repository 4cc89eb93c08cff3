"""Training-step benchmark (``tools/benchmark.py``) and data-loading benchmark; see docs/PERFORMANCE.md."""

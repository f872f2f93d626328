"""graphc's benchmarks: `python -m bench` (or `graphc bench`) from the repository root.

Never part of the test suite: they print medians and ratios against peers measured in
the same run and gate nothing. See bench/README.md for what each one measures.
"""

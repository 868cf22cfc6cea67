"""Benchmarks: each script prints a JSON summary as its last line (see README.md)."""

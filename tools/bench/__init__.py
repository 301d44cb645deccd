"""Benchmarks for graphswarm (run them as scripts; see README.md here)."""

"""Benchmarks for ecmh: speed (`python -m benchmarks.speed`)."""

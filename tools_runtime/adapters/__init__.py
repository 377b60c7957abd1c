"""Adapters that turn outside benchmarks and data sets into our records."""

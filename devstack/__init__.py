"""Throwaway local servers for tests, benchmarks and the demo (never used by the exporter)."""

"""Sparki storage exporter: PostgreSQL, Redis/Valkey and S3/MinIO metrics for Prometheus."""

__version__ = "0.1.0"

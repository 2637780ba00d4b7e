"""Sparki storage exporter: metrics of PostgreSQL, MySQL/MariaDB, Redis/Valkey, Memcached,
S3/MinIO, etcd, NATS and embedded LSM stores for Prometheus (one adapter package each, in
exporter.adapters)."""

__version__ = "0.1.0"

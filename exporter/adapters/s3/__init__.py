"""The S3 adapter: S3 and MinIO, one bucket per target, read by switchable collectors.

A package: ``config`` (the target's settings, driver-free), ``target`` (clients, the
shared executor and the poll), ``context`` (what a collector gets: :class:`S3Context`,
and the collector base), one module per collector (``canary``, ``cloudwatch``,
``minio``, ``inventory``, ``multipart``, ``lifecycle``, ``cost``), helpers (``errors``,
``usage``, ``minio_format``), ``catalog`` (collectors, signals, recordings, panels,
promtool cases; imports no driver) and ``spec`` (the
:class:`exporter.adapter.AdapterSpec` the core loads). This file imports nothing, so
reading the catalog never loads the driver.
"""

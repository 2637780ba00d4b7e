"""The S3 adapter: S3 and MinIO: canary, CloudWatch request metrics, MinIO metrics, inventory, cost.

A package: ``config``/``target`` (connection and poll), one module per collector,
``catalog`` (collectors, signals, recordings, panels, promtool cases; imports no driver)
and ``spec`` (the :class:`exporter.adapter.AdapterSpec` the core loads). This file
imports nothing, so reading the catalog never loads the driver.
"""

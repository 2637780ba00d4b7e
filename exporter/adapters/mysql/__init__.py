"""The MySQL/MariaDB adapter: statement latency from performance_schema digests, status
counters, InnoDB, replication and Galera.

A package: ``config``/``target`` (connection and poll), one module per collector,
``catalog`` (collectors, signals, recordings, panels, promtool cases; imports no driver)
and ``spec`` (the :class:`exporter.adapter.AdapterSpec` the core loads). This file
imports nothing, so reading the catalog never loads the driver.
"""

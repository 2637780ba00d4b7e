"""The PostgreSQL adapter: pg_stat_statements latency histograms, the pg_stat views, replication.

A package: ``config``/``target`` (connection and poll), one module per collector,
``catalog`` (collectors, signals, recordings, panels, promtool cases; imports no driver)
and ``spec`` (the :class:`exporter.adapter.AdapterSpec` the core loads). This file
imports nothing, so reading the catalog never loads the driver.
"""

"""The Memcached adapter: several nodes per target, stats, slabs, settings and a canary.

A package: ``config``/``target`` (connections and the poll), ``protocol`` (the text
protocol on asyncio streams), one module per collector, ``catalog`` (collectors,
signals, recordings, panels, promtool cases; imports no driver) and ``spec`` (the
:class:`exporter.adapter.AdapterSpec` the core loads). This file imports nothing.
"""

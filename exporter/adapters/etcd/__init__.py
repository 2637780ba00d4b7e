"""etcd adapter: canary, per-member status and alarms through the v3 JSON gateway.

Imports nothing: the catalog is read without aiohttp's session machinery being set up,
and the spec (``.spec``) is imported only when a config names an ``etcd`` section.
"""

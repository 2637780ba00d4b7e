"""Embedded LSM stores (Badger, LevelDB, Pebble): their directory and the host's expvar.

Imports nothing, so reading the driver-free catalog loads neither aiohttp's client nor
the generator.
"""

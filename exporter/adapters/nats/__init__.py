"""NATS with JetStream: monitoring endpoints and a request/reply canary.

Imports nothing, so reading the driver-free catalog never loads nats-py.
"""

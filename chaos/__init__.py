"""Fault-injection and bad-input suite: real gateway and worker processes against real Kafka.

``python -m chaos`` runs every scenario, ``--quick`` the CI subset; see docs/RELIABILITY.md.
"""

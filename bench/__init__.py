"""Benchmark harness: the gateway against this machine's physical limits (``python -m bench``).

Baselines and the system under test run in the same sitting on the same broker:
B1 HTTP echo through FastAPI without Kafka (`bench.echo`), B2 a raw Kafka
request-reply ping-pong without HTTP (`bench.pingpong`), and S the full gateway.
See docs/PERFORMANCE.md for the method and the figures.
"""

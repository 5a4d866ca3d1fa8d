"""Benchmark harness: the gateway against this machine's physical limits (``python -m bench``).

Floors, baselines and the system under test run in the same sitting on the same broker:
the HTTP floor, a raw ASGI echo on uvicorn (`bench.httpfloor`), and the Kafka floor,
request-reply between two plain confluent-kafka processes (`bench.kafkafloor`), which the
targets compare S with; B1 HTTP echo through the gateway's FastAPI endpoint without Kafka
(`bench.echo`), B2 a Kafka request-reply ping-pong with the real worker and no HTTP
(`bench.pingpong`), and S the full gateway. See docs/PERFORMANCE.md for the method and
the figures.
"""

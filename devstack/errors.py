"""The one exception devstack raises: something stops a local broker from running."""


class LocalKafkaError(RuntimeError):
    """A local Kafka broker cannot be resolved, started or reached; the message names the fix."""

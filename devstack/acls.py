"""Least-privilege ACLs of the gateway and the workers: the table docs/SECURITY.md shows.

Whoever may write to a reply topic can answer any caller waiting on it, and whoever may
write to the catalog can announce routes: these bindings are the defence, so the gateway
may never write either. Kafka 4 needs no ``IDEMPOTENT_WRITE`` on the cluster for an
idempotent producer: ``WRITE`` on a topic implies it (KIP-679). ``READ`` and ``WRITE``
imply ``DESCRIBE`` on the same topic.
"""

from __future__ import annotations

from collections.abc import Iterable

# confluent_kafka.admin re-exports these without __all__, which strict mypy does not count.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

_ANY_HOST = "*"


GATEWAY_GROUPS = "rpc-gateway-"
"""Prefix of the ``group.id`` of every gateway consumer (`gateway.settings`, `gateway.feeds`)."""


def allow(
    principal: str,
    kind: ResourceType,
    name: str,
    operation: AclOperation,
    pattern: ResourcePatternType = ResourcePatternType.LITERAL,
) -> AclBinding:
    """One ALLOW binding on a resource name (literal unless ``pattern`` says prefixed), from any host."""
    return AclBinding(kind, name, pattern, principal, _ANY_HOST, operation, AclPermissionType.ALLOW)


def gateway(
    principal: str,
    *,
    requests: str,
    replies: str,
    catalog: str = "",
    publish: Iterable[str] = (),
    streams: Iterable[str] = (),
) -> list[AclBinding]:
    """Produce requests, read replies and the catalog, produce to ``publish``, read ``streams``.

    The gateway's consumers are ``assign()``ed: they never join their group nor commit, so
    they need no ``READ`` on it. librdkafka still looks the group's coordinator up
    (FindCoordinator), which needs ``DESCRIBE``; refused, every consumer would log a group
    authorisation error each second. Each process has its own group, hence the prefix.
    """
    bindings = [
        allow(principal, ResourceType.TOPIC, requests, AclOperation.WRITE),
        allow(principal, ResourceType.TOPIC, replies, AclOperation.READ),
        allow(
            principal, ResourceType.GROUP, GATEWAY_GROUPS, AclOperation.DESCRIBE, ResourcePatternType.PREFIXED
        ),
    ]
    if catalog:
        bindings.append(allow(principal, ResourceType.TOPIC, catalog, AclOperation.READ))
    bindings += [allow(principal, ResourceType.TOPIC, topic, AclOperation.WRITE) for topic in publish]
    bindings += [allow(principal, ResourceType.TOPIC, topic, AclOperation.READ) for topic in streams]
    return bindings


def worker(
    principal: str,
    *,
    group: str,
    requests: str,
    replies: Iterable[str],
    dead_letter: str,
    catalog: str = "",
) -> list[AclBinding]:
    """Consume requests in ``group``, produce replies, dead letters and catalog announcements."""
    bindings = [
        allow(principal, ResourceType.TOPIC, requests, AclOperation.READ),
        allow(principal, ResourceType.GROUP, group, AclOperation.READ),
        allow(principal, ResourceType.TOPIC, dead_letter, AclOperation.WRITE),
    ]
    bindings += [allow(principal, ResourceType.TOPIC, topic, AclOperation.WRITE) for topic in replies]
    if catalog:
        bindings.append(allow(principal, ResourceType.TOPIC, catalog, AclOperation.WRITE))
    return bindings

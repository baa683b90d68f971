"""structlog JSON logs. Every line carries the node, its role and its epoch,
read from the live node context at the moment the line is written."""
import logging
import sys
from dataclasses import dataclass

import structlog


@dataclass
class NodeContext:
    node: str = "-"
    role: str = "starting"
    epoch: int | None = None


CONTEXT = NodeContext()


def _add_node_context(_, __, event: dict) -> dict:
    event.setdefault("node", CONTEXT.node)
    event.setdefault("role", CONTEXT.role)
    event.setdefault("epoch", CONTEXT.epoch)
    return event


def configure(node_id: str, level: str = "info", stream=None) -> None:
    CONTEXT.node = node_id
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_node_context,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )


def get(name: str):
    return structlog.get_logger(name)

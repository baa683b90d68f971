"""What the node could not read from the venue, counted and logged. Sans-I/O.

Every decode failure on the venue path ends here as a counted, logged
event — never as an exception escaping into the order path — and the
caller then applies its own handling policy (an order reply that does not
decode is an order whose outcome is unknown; a user-data event that does not
decode means an event was missed and the account is reconciled at once;
a depth event that does not decode is a hole in the sequence).

Three kinds, each exported to Prometheus:
- undecodable: a payload that is not the documented message (bad JSON, a
  missing required field, a wrong type), by source and message;
- unknown values: a documented message carrying a value outside the
  documented set of an enum field (messages.py), by message and field;
- unknown events: a message type the node does not know, by source and type.

Logs are bounded: the first LOGGED_PER_KEY of each key, then one in
LOG_EVERY, so a venue sending garbage cannot flood the log.
"""
from collections import Counter

from .. import logs

log = logs.get("venue-wire")
LOGGED_PER_KEY = 10
LOG_EVERY = 1000
MAX_KEYS = 200  # distinct keys kept per kind; beyond, counted under "other"
SNIPPET = 300


def _snippet(raw) -> str:
    if raw is None:
        return ""
    data = bytes(raw)[:SNIPPET] if not isinstance(raw, str) else raw[:SNIPPET].encode(errors="replace")
    return data.decode(errors="replace")


class DecodeLedger:
    def __init__(self):
        self.undecodable: Counter = Counter()  # (source, message) -> count
        self.unknown_values: Counter = Counter()  # (message, field) -> count
        self.unknown_value_samples: dict[tuple[str, str], set[str]] = {}  # a few raw values per key, for /status
        self.unknown_events: Counter = Counter()  # (source, event type) -> count

    @staticmethod
    def _bump(counter: Counter, key: tuple) -> int:
        if key not in counter and len(counter) >= MAX_KEYS:
            key = key[:-1] + ("other",)
        counter[key] += 1
        return counter[key]

    @staticmethod
    def _should_log(n: int) -> bool:
        return n <= LOGGED_PER_KEY or n % LOG_EVERY == 0

    def on_undecodable(self, source: str, message: str, error: Exception, raw=None) -> None:
        n = self._bump(self.undecodable, (source, message))
        if self._should_log(n):
            log.error("a venue message did not decode", source=source, message=message, error=str(error),
                      count=n, payload=_snippet(raw))

    def on_unknown_value(self, message: str, field: str, value: str, context: str = "") -> None:
        n = self._bump(self.unknown_values, (message, field))
        samples = self.unknown_value_samples.setdefault((message, field), set())
        if len(samples) < 5:
            samples.add(str(value))
        if self._should_log(n):
            log.error("the venue sent a value the node does not know", message=message, field=field,
                      value=value, count=n, context=context)

    def on_unknown_event(self, source: str, event: str, raw=None) -> None:
        n = self._bump(self.unknown_events, (source, event))
        if self._should_log(n):
            log.warning("the venue sent an event type the node does not know; ignored", source=source,
                        event_type=event, count=n, payload=_snippet(raw))

    def summary(self) -> dict:
        return {
            "undecodable": {f"{s}:{m}": n for (s, m), n in self.undecodable.items()},
            "unknown_values": {f"{m}.{f}": {"count": n, "values": sorted(self.unknown_value_samples.get((m, f), ()))}
                               for (m, f), n in self.unknown_values.items()},
            "unknown_events": {f"{s}:{e}": n for (s, e), n in self.unknown_events.items()},
        }

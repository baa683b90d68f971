"""Client order ids that name their author: `e<epoch>.<node>.<boot>_<seq>`,
every number in base 36 (epochs are millisecond-sized, see coordinator/backend.py).

Binance allows 36 characters of `[.A-Z:/a-z0-9_-]`. The epoch and node id can
be read back from the venue's open orders, the audit log and the user data
stream, which is how a new primary recognises an older epoch's orders and a
fenced node its own.
"""
import re
from dataclasses import dataclass

MAX_EPOCH = 36**8 - 1
_PATTERN = re.compile(r"e([0-9a-z]{1,8})\.([a-z0-9][a-z0-9-]{0,7})\.([0-9a-z]{1,8}_[0-9a-z]{1,6})")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if not n:
            return out


@dataclass(frozen=True, slots=True)
class ClientId:
    epoch: int
    node: str
    serial: str


def parse(client_order_id: str) -> ClientId | None:
    match = _PATTERN.fullmatch(client_order_id)
    if not match:
        return None
    return ClientId(int(match.group(1), 36), match.group(2), match.group(3))


class ClientIdFactory:
    """Unique across restarts: the boot stamp (milliseconds, base36, so a
    crash-restart within the same second still differs) changes per process
    start, the sequence per order."""

    def __init__(self, node_id: str, boot_time_ms: int):
        self.node_id = node_id
        self.boot = base36(boot_time_ms)
        self.seq = 0

    def next(self, epoch: int) -> str:
        if not 0 <= epoch <= MAX_EPOCH:
            raise ValueError(f"epoch {epoch} does not fit a client order id")
        self.seq += 1
        if self.seq >= 36**6:
            raise OverflowError("client id sequence exhausted for this boot; restart the node")
        cid = f"e{base36(epoch)}.{self.node_id}.{self.boot}_{base36(self.seq)}"
        assert len(cid) <= 36, cid
        return cid

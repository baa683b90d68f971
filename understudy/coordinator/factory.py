"""The lock backend and trading lock a node's config asks for."""
from ..config import LockSection, Secrets
from .backend import LockBackend
from .consul_backend import ConsulBackend, ConsulSettings
from .redis_backend import RedisBackend, RedisSettings
from .trading_lock import TradingLock


def make_backend(section: LockSection, secrets: Secrets) -> LockBackend:
    if section.backend == "redis":
        r = section.redis
        return RedisBackend(RedisSettings(host=r.host, port=r.port, username=r.username,
                                          password=secrets.lock_password, tls=r.tls, ca_file=r.ca_file,
                                          key_prefix=r.key_prefix))
    c = section.consul
    return ConsulBackend(ConsulSettings(urls=tuple(c.urls), token=secrets.lock_password, key_prefix=c.key_prefix))


def make_trading_lock(section: LockSection, secrets: Secrets, node_id: str, on_lost=None) -> TradingLock:
    return TradingLock(make_backend(section, secrets), node_id, section.ttl_s, section.drift, section.margin_s,
                       section.renew_every_s, on_lost=on_lost)

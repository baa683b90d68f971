"""Hot standby with two real node processes, the simulated exchange and a
real redis-server: failover on SIGKILL and SIGSTOP, switchover, pause, and
heartbeats that must be refused. Safety is judged from the venue's audit log."""
import asyncio
import signal
import time

import aiohttp
import pytest

from tests.clusterproc import Cluster, quoting_primary, role
from tests.redisproc import RedisProcess

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def cluster(start_sim, tmp_path):
    sim = start_sim("--seed", "9", "--flow-rate", "1")
    redis = RedisProcess(tmp_path).start()
    c = Cluster(sim, redis, tmp_path)
    try:
        c.start("sg-1")
        c.start("sg-2")
        yield c
    finally:
        c.stop()
        redis.kill()


def epoch_of(client_id: str) -> int:
    return int(client_id.split(".")[0][1:], 36)


def node_of(client_id: str) -> str:
    return client_id.split(".")[1]


async def _primary(cluster, session) -> str:
    statuses = await cluster.wait_for(session, quoting_primary, 20, "one quoting primary")
    return quoting_primary(statuses)


async def test_sigkill_of_the_primary_fails_over(cluster):
    async with aiohttp.ClientSession() as session:
        old = await _primary(cluster, session)
        new = "sg-2" if old == "sg-1" else "sg-1"
        old_epoch = (await cluster.status(session, old))["ha"]["epoch"]
        killed_at = time.time()
        cluster.nodes[old].signal(signal.SIGKILL)
        cluster.nodes[old].wait()
        statuses = await cluster.wait_for(session, lambda s: quoting_primary({new: s[new]}) == new, 10,
                                          "the standby to take over")
        new_epoch = statuses[new]["ha"]["epoch"]
        assert new_epoch > old_epoch

        # Every order of the dead primary is gone from the venue; only the new epoch rests.
        records = cluster.sim.audit_records(None)
        old_ids = {r["client_order_id"] for r in records if r["kind"] == "request" and r["action"] == "new"
                   and r["outcome"] == "accepted" and node_of(r["client_order_id"]) == old}
        done = {r["client_order_id"] for r in records if r["kind"] == "order_done"}
        assert old_ids and old_ids <= done
        for order in statuses[new]["orders"]:
            assert epoch_of(order["client_id"]) == new_epoch and node_of(order["client_id"]) == new
        first_new = min(r["recv_us"] for r in records if r["kind"] == "request" and r["action"] == "new"
                        and r["outcome"] == "accepted" and epoch_of(r["client_order_id"]) == new_epoch)
        assert (first_new / 1e6 - killed_at) < 3.0, "takeover within the 3 s budget"

        cluster.start(old)  # the restarted node rejoins as standby: non-preemptive
        await cluster.wait_for(session, lambda s: role(s[old]) == "standby", 20, "rejoin as standby")
        await asyncio.sleep(1.5)
        assert role(await cluster.status(session, new)) == "primary"
        assert role(await cluster.status(session, old)) == "standby"

import pytest

from tests.simproc import SimProcess

pytest_plugins = []


@pytest.fixture
def start_sim(tmp_path):
    """Starts `understudy sim` subprocesses on free ports; stops them after the test."""
    started: list[SimProcess] = []

    def start(*extra: str, accounts=(("test-key-a", "test-secret-a"), ("test-key-b", "test-secret-b")),
              audit_log: bool = True) -> SimProcess:
        sim = SimProcess(tmp_path, accounts, extra, audit_log)
        started.append(sim)
        sim.start()
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def quiet_sim(start_sim):
    """A venue with no synthetic participants: every order in the book is the test's."""
    return start_sim("--no-market")


@pytest.fixture
def live_sim(start_sim):
    """A venue with its synthetic market running (seeded)."""
    return start_sim("--seed", "7")

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


# -- failures name themselves ----------------------------------------------------------
# A test that fails now and then is a red CI waiting to happen; it must be found by name
# even in a truncated log. Each failure is announced the moment it happens, with how long
# the test ran (a hang shows as the timeout), and listed again as the very last lines.
_failures: list[str] = []


def pytest_runtest_logreport(report):
    if report.failed:
        line = f"{report.nodeid} [{report.when}] after {report.duration:.1f} s"
        _failures.append(line)
        reporter = _reporter.get("terminal")
        if reporter is not None:
            reporter.write_line(f"TEST FAILED: {line}", red=True, bold=True)


_reporter: dict = {}


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    _reporter["terminal"] = config.pluginmanager.get_plugin("terminalreporter")


def pytest_terminal_summary(terminalreporter):
    if _failures:
        terminalreporter.section("failed tests, by name")
        for line in _failures:
            terminalreporter.write_line(line)

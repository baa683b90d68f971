"""CPU pinning shared by the in-process benchmarks (imported from the
script's own directory, which Python puts first on sys.path)."""
import os


def pin_to_one_core(wanted: int) -> int | None:
    """Pins this process to CPU `wanted`, or to the first allowed CPU when that
    one is not allowed; None where affinity is unsupported."""
    try:
        allowed = os.sched_getaffinity(0)
        cpu = wanted if wanted in allowed else min(allowed)
        os.sched_setaffinity(0, {cpu})
        return cpu
    except (AttributeError, OSError):
        return None

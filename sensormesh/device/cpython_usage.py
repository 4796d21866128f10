# CPU time and resident memory of a device process on CPython, for its metrics reply
# (metrics.py); a board never loads this module.
import time


def usage():
    """{"cpu_s": CPU seconds of the process, "rss": resident bytes}."""
    out = {"cpu_s": time.process_time()}
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os
        out["rss"] = pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        import resource    # not Linux: the peak instead
        out["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out

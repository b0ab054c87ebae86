"""`python -m bench.peak COMMAND...`: run COMMAND, then print the peak resident memory of the
largest process it ran (its own or any descendant's it waited for), after MARKER.

A child's peak counts its parent's memory at the fork (the kernel keeps the high-water mark of
the address space it replaces at exec), so a benchmark that launched its contenders itself would
charge them its own size. This wrapper imports nothing but the standard library: what it adds is
about 10 MB.
"""

import json
import resource
import subprocess
import sys

MARKER = "BENCH-PEAK "

if __name__ == "__main__":
    code = subprocess.call(sys.argv[1:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(MARKER + json.dumps({"peak_rss_mb": peak}), flush=True)
    sys.exit(code)

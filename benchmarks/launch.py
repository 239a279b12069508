"""Run a command and report its wall time and peak RSS as one JSON line on stderr's last line.

A child's peak RSS counter starts from its parent's at fork, so measuring from the (large)
benchmark process would inflate every figure; this small launcher is the parent instead.
"""
import json
import os
import subprocess
import sys
import time

t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(p.pid, 0)
print(json.dumps({"wall": time.perf_counter() - t0, "rss_mb": usage.ru_maxrss / 1024,
                  "code": os.waitstatus_to_exitcode(status)}), file=sys.stderr)

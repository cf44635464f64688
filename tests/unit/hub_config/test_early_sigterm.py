"""An early SIGTERM ends `gpulab up` even where start-up swallows the SystemExit it raises."""

import signal
import subprocess
import sys
import time


PROGRAM = """
import signal, sys, time
from gpulab.hub_config import up
up.EARLY_EXIT_GRACE = 1.0
signal.signal(signal.SIGTERM, up._exit_on_sigterm)
print("ready", flush=True)
while True:  # a library that catches BaseException and carries on
    try:
        time.sleep(0.05)
    except BaseException:
        pass
"""


def test_a_swallowed_exit_still_ends_the_process_within_the_grace():
    process = subprocess.Popen([sys.executable, "-c", PROGRAM], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(20)
    finally:
        process.kill()
    assert code == 128 + signal.SIGTERM
    assert time.monotonic() - started < 15

"""Send ``run`` tasks of proc_app at a steady rate for a while, then write when each was sent.

Usage: ``python steady_producer.py PER_SECOND SECONDS TASK_SECONDS OUT``. Each send is
scheduled at ``start + n / PER_SECOND`` (so a late send does not shift the ones after
it); OUT gets one ``time.time()`` per line, one line per send, when the run ends.
"""

from __future__ import annotations

import sys
import time

from proc_app import app


def main(per_s: float, seconds: float, task_s: float, out: str) -> None:
    sent: list[float] = []
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        due = len(sent) / per_s
        if due > elapsed:
            time.sleep(due - elapsed)  # pacing the load, not waiting for an event
        app.send_task("run", [f"s{len(sent)}", task_s])
        sent.append(time.time())
    app.close()
    with open(out, "w") as f:
        f.write("".join(f"{t:.6f}\n" for t in sent))


if __name__ == "__main__":
    main(float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4])

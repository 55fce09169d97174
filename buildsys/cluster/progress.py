"""The client's progress: the same tqdm bar and ``[n/total] pn:task (note)``
lines as a local build (scheduler.py), fed by tasks that run elsewhere."""
from __future__ import annotations

import sys
import threading

from tqdm import tqdm


class Progress:
    def __init__(self, total: int, stream=None):
        self.stream = stream or sys.stderr
        self.total = total
        self.done = 0
        self._lock = threading.Lock()
        self._bar = tqdm(total=total, file=self.stream, unit="task", dynamic_ncols=True, leave=False,
                         disable=not self.stream.isatty())

    def say(self, text: str) -> None:
        with self._lock:
            if self._bar.disable:
                print(text, file=self.stream, flush=True)
            else:
                self._bar.write(text, file=self.stream)

    def task(self, node: str, note: str = "", failed: bool = False, count: bool = True) -> None:
        """One task done (or failed): a line, and the bar one step on (unless
        ``count`` is False: a task run again after its worker was lost)."""
        with self._lock:
            if count and self.done < self.total:
                self.done += 1
                self._bar.update(1)
            n = self.done
        self.say(f"[{n}/{self.total}] {node}" + (" FAILED" if failed else "") + (f" ({note})" if note else ""))

    def skip(self, count: int) -> None:
        """Tasks the graph counted that did not run (a worker restored or resumed the recipe)."""
        with self._lock:
            count = max(0, min(count, self.total - self.done))
            self.done += count
            self._bar.update(count)

    def close(self) -> None:
        self._bar.close()

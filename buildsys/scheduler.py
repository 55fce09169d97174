"""Running a DAG of tasks in parallel, with one progress bar and one line per task."""
from __future__ import annotations

import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import networkx as nx
from tqdm import tqdm


class TaskFailure(Exception):
    """Raised by a task runner; ``report`` is printed as is."""

    def __init__(self, report: str):
        super().__init__(report)
        self.report = report


def run_graph(graph: nx.DiGraph, execute, jobs: int, keep_going: bool = False, stream=None) -> list[str]:
    """Run execute(node) for every node once its predecessors succeeded.

    Returns the failed nodes (empty on success).  Without keep_going, no new
    task starts after the first failure; running ones finish.  Any other
    exception from a task is a bug: no new task starts, the running ones
    finish, and it is raised with a note naming the task.
    """
    stream = stream or sys.stderr
    total = graph.number_of_nodes()
    waiting = {node: graph.in_degree(node) for node in graph.nodes}
    ready = sorted(node for node, n in waiting.items() if n == 0)
    failed: list[str] = []
    skipped: set[str] = set()
    crash: BaseException | None = None
    done = 0
    lock = threading.Lock()
    bar = tqdm(total=total, file=stream, unit="task", dynamic_ncols=True, leave=False,
               disable=not stream.isatty())

    def say(text: str) -> None:
        with lock:
            if bar.disable:
                print(text, file=stream, flush=True)
            else:
                bar.write(text, file=stream)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        running: dict[Future, str] = {}
        stop = False
        while ready or running:
            while ready and not stop and len(running) < max(1, jobs):
                node = ready.pop(0)
                running[pool.submit(execute, node)] = node
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                node = running.pop(future)
                done += 1
                bar.update(1)
                try:
                    note = future.result()
                except TaskFailure as exc:
                    failed.append(node)
                    say(f"[{done}/{total}] {node} FAILED\n{exc.report}")
                    for later in nx.descendants(graph, node):
                        skipped.add(later)
                    if not keep_going:
                        stop = True
                    continue
                except Exception as exc:
                    exc.add_note(f"in task {node}")
                    say(f"[{done}/{total}] {node} FAILED (internal error: {type(exc).__name__}: {exc})")
                    crash = crash or exc
                    stop = True
                    continue
                say(f"[{done}/{total}] {node}" + (f" ({note})" if note else ""))
                for succ in graph.successors(node):
                    waiting[succ] -= 1
                    if waiting[succ] == 0 and succ not in skipped:
                        ready.append(succ)
                ready.sort()
    bar.close()
    if crash is not None:
        raise crash
    if skipped and failed:
        print(f"{len(skipped)} task(s) not run because of the failure", file=stream)
    return failed

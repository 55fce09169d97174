"""The parallel task scheduler (buildsys/scheduler.py) on real threads: order,
parallelism, --keep-going, stopping after a failure, and a task's unexpected
exception reaching the caller with the task named."""
import io
import threading
import time

import networkx as nx
import pytest

from buildsys.scheduler import TaskFailure, run_graph


def graph(edges, nodes=()):
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)      # (before, after)
    return g


class Recorder:
    """An execute() that logs start and end of each task, and fails or raises
    for the nodes it is told to."""

    def __init__(self, fail=(), crash=(), delay=0.0, delays=None, waits=None):
        self.fail, self.crash = set(fail), set(crash)
        self.delay, self.delays = delay, delays or {}
        self.waits = waits or {}             # node -> the node that must have ended before it ends
        self.ended: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []
        self.running = 0
        self.max_running = 0

    def _ended(self, node) -> threading.Event:
        with self.lock:
            return self.ended.setdefault(node, threading.Event())

    def __call__(self, node):
        with self.lock:
            self.events.append(("start", node))
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            if node in self.waits:
                assert self._ended(self.waits[node]).wait(10)
            time.sleep(self.delays.get(node, self.delay))
            if node in self.crash:
                raise RuntimeError(f"bug while running {node}")
            if node in self.fail:
                raise TaskFailure(f"ERROR: {node}: exit status 2\nlog: /logs/{node}.log")
            return f"note {node}" if node.endswith("!") else None
        finally:
            with self.lock:
                self.running -= 1
                self.events.append(("end", node))
            self._ended(node).set()

    def started(self):
        return [n for kind, n in self.events if kind == "start"]

    def index(self, kind, node):
        return self.events.index((kind, node))


def assert_order(g, rec):
    for before, after in g.edges:
        if after in rec.started():
            assert rec.index("end", before) < rec.index("start", after), (before, after, rec.events)


def test_dependencies_first_with_two_jobs():
    # a diamond, a chain and loose nodes
    g = graph([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e"), ("x", "y"), ("y", "z")], nodes=["lone"])
    rec = Recorder(delay=0.01)
    out = io.StringIO()
    assert run_graph(g, rec, jobs=2, stream=out) == []
    assert sorted(rec.started()) == sorted(g.nodes)        # each exactly once
    assert len(rec.started()) == len(g.nodes)
    assert_order(g, rec)
    assert rec.max_running <= 2
    lines = out.getvalue().splitlines()
    assert len(lines) == len(g.nodes) and lines[-1].startswith(f"[{len(g.nodes)}/{len(g.nodes)}] ")


def test_two_jobs_really_run_two_at_once():
    barrier = threading.Barrier(2, timeout=10)

    def execute(node):
        barrier.wait()           # both must be running at the same time, or this times out
        return None

    assert run_graph(graph([], nodes=["p", "q"]), execute, jobs=2, stream=io.StringIO()) == []


def test_one_job_runs_one_at_a_time():
    g = graph([("a", "b")], nodes=["c", "d", "e"])
    rec = Recorder(delay=0.01)
    assert run_graph(g, rec, jobs=1, stream=io.StringIO()) == []
    assert rec.max_running == 1
    assert_order(g, rec)


def test_a_random_dag_in_order():
    g = nx.gn_graph(60, seed=7).reverse()        # a random tree-like DAG, edges parent -> child
    g = nx.relabel_nodes(g, {n: f"t{n:02d}" for n in g.nodes})
    assert nx.is_directed_acyclic_graph(g)
    rec = Recorder()
    assert run_graph(g, rec, jobs=2, stream=io.StringIO()) == []
    assert len(rec.started()) == 60
    assert_order(g, rec)


def test_notes_are_printed():
    out = io.StringIO()
    run_graph(graph([], nodes=["cached!"]), Recorder(), jobs=2, stream=out)
    assert out.getvalue() == "[1/1] cached! (note cached!)\n"


def test_keep_going_builds_everything_not_depending_on_the_failure():
    # bad -> mid -> top fail together; ok1 -> ok2 and the sibling of bad do not depend on it
    g = graph([("base", "bad"), ("base", "sibling"), ("bad", "mid"), ("mid", "top"), ("sibling", "top"),
               ("ok1", "ok2")])
    rec = Recorder(fail={"bad"}, delay=0.01)
    out = io.StringIO()
    assert run_graph(g, rec, jobs=2, keep_going=True, stream=out) == ["bad"]
    assert set(rec.started()) == {"base", "bad", "sibling", "ok1", "ok2"}
    assert_order(g, rec)
    text = out.getvalue()
    assert "bad FAILED\nERROR: bad: exit status 2\nlog: /logs/bad.log" in text
    assert "2 task(s) not run because of the failure" in text


def test_keep_going_reports_every_failure():
    g = graph([("f1", "after1"), ("f2", "after2")], nodes=["ok"])
    rec = Recorder(fail={"f1", "f2"})
    failed = run_graph(g, rec, jobs=2, keep_going=True, stream=io.StringIO())
    assert sorted(failed) == ["f1", "f2"]
    assert set(rec.started()) == {"f1", "f2", "ok"}


def test_without_keep_going_a_failure_stops_the_rest():
    # one job: 'a' (first in name order) fails; nothing else may start
    g = graph([("a", "a2")], nodes=["b", "c", "d"])
    rec = Recorder(fail={"a"})
    out = io.StringIO()
    assert run_graph(g, rec, jobs=1, stream=out) == ["a"]
    assert rec.started() == ["a"]
    assert "a FAILED" in out.getvalue()


def test_without_keep_going_running_tasks_finish_but_none_start():
    # two jobs: 'fast' fails while 'slow' runs; slow finishes, its successor and the rest never start
    g = graph([("slow", "after_slow")], nodes=["fast", "x1", "x2", "x3"])
    rec = Recorder(fail={"fast"}, waits={"slow": "fast"}, delays={"slow": 0.1})
    out = io.StringIO()
    assert run_graph(g, rec, jobs=2, stream=out) == ["fast"]
    assert set(rec.started()) == {"fast", "slow"}
    assert ("end", "slow") in rec.events            # not abandoned half-way
    assert "slow" in out.getvalue()


def test_an_exception_in_a_task_reaches_the_caller_naming_the_task():
    g = graph([("boom", "after")], nodes=["slow"])
    rec = Recorder(crash={"boom"}, waits={"slow": "boom"}, delays={"slow": 0.1})
    out = io.StringIO()
    with pytest.raises(RuntimeError, match="bug while running boom") as info:
        run_graph(g, rec, jobs=2, keep_going=True, stream=out)
    assert "in task boom" in " ".join(getattr(info.value, "__notes__", []))
    assert "boom FAILED" in out.getvalue()
    assert "after" not in rec.started()
    # the task running beside it was waited for, not left running behind the caller's back
    assert ("end", "slow") in rec.events


def test_an_empty_graph():
    assert run_graph(nx.DiGraph(), Recorder(), jobs=2, stream=io.StringIO()) == []

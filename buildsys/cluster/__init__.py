"""Builds spread over a Dask cluster (docs/cluster.md).

The unit of work is a whole recipe: the client (client.py) sends each recipe
that must be built to a Dask worker as soon as the recipes it needs are done;
the worker (job.py, started by `buildsys worker`, see worker.py) unpacks the
project snapshot the client planned (snapshot.py), checks it plans the same
signature, builds the recipe with the ordinary engine, which restores its
dependencies from the shared cache and pushes the signed result there, and
sends back the per-task lines.  Resources (resources.py) keep a recipe away
from workers that would not build it exactly.

Dask is imported only here, when a cluster is used: a local build never
loads it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

    from ..build import Session
    from ..engine import BuildOptions


def run_on_cluster(session: Session, graph: nx.DiGraph, options: BuildOptions) -> list[str]:
    """Run the execution graph on the cluster named by options.cluster; the failed task names."""
    from .client import run_on_cluster as run

    return run(session, graph, options)

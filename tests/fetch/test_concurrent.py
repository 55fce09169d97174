"""Two processes fetching the same file into the same download directory."""
import json
import subprocess
import sys

from .helpers import payload, sha256

FETCH_ONE = """
import json, sys, time
from pathlib import Path
from buildsys.fetch import FetchConfig, Source, fetch
url, digest, dl_dir = sys.argv[1:4]
start = time.time()
path = fetch(Source(url, sha256=digest), FetchConfig(dl_dir=Path(dl_dir), mirrors=[]))
print(json.dumps({"path": str(path), "start": start, "end": time.time()}))
"""


def test_two_processes_download_the_file_once(server, dl_dir):
    data = payload(300_000, seed=5)
    server.files["/big-1.0.tar.gz"] = data
    server.throttle["/big-1.0.tar.gz"] = 2.5
    argv = [sys.executable, "-c", FETCH_ONE, server.url("/big-1.0.tar.gz"), sha256(data), str(dl_dir)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    first, second = results
    assert first["start"] < second["end"] and second["start"] < first["end"], "the fetches did not overlap"
    assert first["path"] == second["path"] == str(dl_dir / "big-1.0.tar.gz")
    assert (dl_dir / "big-1.0.tar.gz").read_bytes() == data
    assert len(server.gets("/big-1.0.tar.gz")) == 1
    assert not (dl_dir / "big-1.0.tar.gz.part").exists()

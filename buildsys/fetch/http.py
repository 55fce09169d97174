"""HTTP(S) downloads: streamed to a .part file, resumed with Range after a dropped connection.

urllib3's Retry (through requests) handles refused connections and 5xx answers
with backoff; a connection that dies in the middle of the body is resumed here
from the bytes already on disk, because Retry cannot resume a stream.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ProtocolError, ReadTimeoutError
from urllib3.util.retry import Retry

from ..errors import FetchError

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 30
RESUME_ATTEMPTS = 20     # interrupted transfers that still made progress
STALLED_ATTEMPTS = 2     # attempts that got no byte at all before giving up on this URL
CHUNK = 1 << 16

_session: requests.Session | None = None


class NotFound(FetchError):
    """The server answered, but does not have the file (4xx)."""


def session() -> requests.Session:
    global _session
    if _session is None:
        # read=0: a server that accepts and then says nothing is given up on by
        # the loop below, which knows whether any byte arrived.
        retry = Retry(total=3, connect=3, read=0, status=3, backoff_factor=0.5,
                      status_forcelist=(429, 500, 502, 503, 504), allowed_methods=("GET", "HEAD"),
                      raise_on_status=False,
                      respect_retry_after_header=False)   # Retry-After: 86400 must not hang a build
        s = requests.Session()
        adapter = HTTPAdapter(max_retries=retry)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        s.headers["User-Agent"] = "buildsys-fetch/1"
        s.trust_env = True
        _session = s
    return _session


def download(url: str, part: Path, progress: bool = True, label: str | None = None) -> None:
    """Download ``url`` into ``part``, appending to what an earlier attempt left there.

    ``file://`` URLs are copied: an archive or mirror may be a local directory."""
    from tqdm import tqdm

    if url.startswith("file:"):
        import shutil
        from urllib.parse import unquote, urlsplit
        path = Path(unquote(urlsplit(url).path))
        if not path.is_file():
            raise NotFound(f"{url}: no such file")
        shutil.copyfile(path, part)
        return

    resumes = stalled = 0
    bar = None
    try:
        while True:
            have = part.stat().st_size if part.exists() else 0
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                with session().get(url, headers=headers, stream=True,
                                   timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)) as resp:
                    if resp.status_code == 416 and have:
                        # Asked past the end: what is on disk may be the whole file, or junk.
                        return
                    if resp.status_code >= 400:
                        raise NotFound(f"{url}: HTTP {resp.status_code} {resp.reason}")
                    mode = "ab" if resp.status_code == 206 and have else "wb"
                    if mode == "wb":
                        have = 0
                    length = resp.headers.get("Content-Length")
                    total = int(length) + have if length and length.isdigit() else None
                    if bar is None:
                        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                                   desc=label or part.name.removesuffix(".part"), leave=False,
                                   disable=not (progress and sys.stderr.isatty()))
                    else:
                        bar.reset(total=total)
                        bar.update(have)
                    with open(part, mode) as out:
                        for chunk in resp.iter_content(CHUNK):
                            out.write(chunk)
                            bar.update(len(chunk))
                    return
            except NotFound:
                raise
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as exc:
                progressed = part.exists() and part.stat().st_size > have
                if progressed:
                    resumes += 1
                    if resumes > RESUME_ATTEMPTS:
                        raise FetchError(f"{url}: gave up after {resumes} interrupted transfers: "
                                         f"{_short(exc)}") from None
                else:
                    stalled += 1
                    if stalled >= STALLED_ATTEMPTS or _is_connect_failure(exc):
                        raise FetchError(f"{url}: {_short(exc)}") from None
                time.sleep(min(0.2 * 2 ** min(resumes + stalled, 5), 5))
            except requests.RequestException as exc:
                raise FetchError(f"{url}: {_short(exc)}") from None
    finally:
        if bar is not None:
            bar.close()


def _is_connect_failure(exc: Exception) -> bool:
    """Refused, unresolvable, unreachable: the adapter's Retry already tried
    again with backoff, so this URL is done.  A read that timed out or broke
    off (the server answered, then went quiet or closed) is for the loop."""
    if not isinstance(exc, requests.ConnectionError) or isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return False
    inner = exc.args[0] if exc.args else None
    inner = getattr(inner, "reason", inner)      # MaxRetryError wraps the last error
    return not isinstance(inner, (ReadTimeoutError, ProtocolError))


def _short(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Max retries exceeded", "Failed to establish", "Name or service", "timed out",
                   "Connection refused", "IncompleteRead", "Connection broken"):
        if marker in text:
            return marker.lower() if marker != "IncompleteRead" else "connection dropped mid-file"
    return text.splitlines()[0][:200] if text else type(exc).__name__

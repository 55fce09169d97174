import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def shared_board_cache(tmp_path_factory):
    """One artifact cache for all board builds of a test session: the native
    tools and the toolchain are built once, not once per board.  Set
    BUILDSYS_TEST_CACHE_DIR to reuse a cache across sessions (fast, but then
    little is really built)."""
    if os.environ.get("BUILDSYS_TEST_CACHE_DIR"):
        yield
        return
    os.environ["BUILDSYS_TEST_CACHE_DIR"] = str(tmp_path_factory.mktemp("board-cache"))
    yield
    del os.environ["BUILDSYS_TEST_CACHE_DIR"]

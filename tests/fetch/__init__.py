"""Tests of buildsys.fetch: downloads, mirrors, git, local sources, unpacking and patches.

No mocks: a real HTTP server on 127.0.0.1, real git repositories, real archives.
"""

"""buildsys: a meta-build system for embedded Linux."""

__version__ = "0.1.0"

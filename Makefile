# The two commands of the README.  Everything else is `buildsys <command>`.
BUILDSYS = .venv/bin/buildsys
PYTEST = .venv/bin/python -m pytest

.PHONY: setup run test check
setup:
	./scripts/setup-host.sh

# Build the default image (x86-virtio) and boot it in QEMU on this terminal.
run: setup
	$(BUILDSYS) build
	$(BUILDSYS) run

# Every test: fast unit and engine tests, then the slow ones (kernel builds, boots).
test: setup
	$(PYTEST) -m "not slow" -q
	$(PYTEST) -m slow -q

# Fast tests only.
check: setup
	$(PYTEST) -m "not slow" -q

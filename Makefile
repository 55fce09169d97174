# The two commands of the README.  Everything else is `buildsys <command>`.
BUILDSYS = .venv/bin/buildsys
PYTEST = .venv/bin/python -m pytest

.PHONY: setup run test check lint
setup:
	./scripts/setup-host.sh

# Build the default image (x86-virtio) and boot it in QEMU on this terminal.
run: setup
	$(BUILDSYS) build
	$(BUILDSYS) run

# Every test: lint first, then fast unit and engine tests, then the slow ones (kernel builds, boots).
test: lint
	$(PYTEST) -m "not slow" -q
	$(PYTEST) -m slow -q

# Fast tests only.
check: setup
	$(PYTEST) -m "not slow" -q

# Static checks (settings in pyproject.toml): ruff on all Python, mypy on the package.
lint: setup
	.venv/bin/ruff check buildsys tests bench
	.venv/bin/mypy

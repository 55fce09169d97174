"""The build-class contract.

A recipe says *what* (sources, options); a build class says *how*: it turns the
recipe's resolved values into the steps of its configure, compile and install
tasks.  Classes register themselves by subclassing BuildClass with a ``name``;
the engine never grows an if/elif per class.

Every step runs inside the sandbox (see sandbox.py) with this fixed layout, the
same on every machine and in every build directory -- that is what makes builds
independent of where the build dir lives:

    /build/src      the unpacked, patched source tree (writable)      ${S}
    /build/obj      a separate build directory (writable)            ${B}
    /build/dest     the install destination, DESTDIR (writable)      ${destdir}
    /build/home     HOME (writable, empty at unpack)
    /build/files    files the class staged with ctx.stage_file() (read-only)
    /build/stage    what the class's host-side code prepared in ctx.paths.stage
                    (read-only: steps cannot plant links where the host writes)
    /build/sysroot  the target dependencies' installed files (read-only)
    /build/native   the native dependencies' installed files (read-only);
                    /build/native/usr/bin is first on PATH

Environment: PATH, HOME, TZ=UTC, LC_ALL=C, SOURCE_DATE_EPOCH, umask 022, JOBS,
ARCH (kernel arch name), BUILDSYS_ARCH (x86_64 / aarch64), CROSS_COMPILE, CC,
CXX, AR, LD, NM, OBJCOPY, STRIP, RANLIB, CFLAGS, CPPFLAGS, LDFLAGS, SYSROOT,
NATIVE, DESTDIR, S, B, plus the recipe's ``env`` mapping and what the class
adds.
"""
from __future__ import annotations

import contextvars
import functools
import hashlib
import inspect
import os
from typing import Any, ClassVar

# A class's parameters are typed settings, the same types as every other key's
# (schema.py): ``params = {"make_args": StrList([], "arguments for every make call")}``.
from ..schema import PARAM_KINDS, Bool, File, Files, Int, Setting, Str, StrList, StrMap  # noqa: F401 (for the classes)


def Param(kind: str, default: Any = None, doc: str = "") -> Setting:  # noqa: N802 -- the former class
    """The former spelling: ``Param("list", [], doc)`` is ``StrList([], doc)``."""
    return PARAM_KINDS[kind](default, doc)


SANDBOX_SRC = "/build/src"
SANDBOX_OBJ = "/build/obj"
SANDBOX_DEST = "/build/dest"
SANDBOX_HOME = "/build/home"
SANDBOX_FILES = "/build/files"
SANDBOX_SYSROOT = "/build/sysroot"
SANDBOX_STAGE = "/build/stage"
SANDBOX_NATIVE = "/build/native"

# Tasks every recipe has, in order.  fetch/unpack/patch and package are the
# engine's; configure/compile/install are the class's.
TASKS = ("fetch", "unpack", "patch", "configure", "compile", "install", "package")
CLASS_TASKS = ("configure", "compile", "install")


_VERSIONS: dict[type, str] = {}


class BuildClass:
    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Setting]] = {}
    # Recipes of this class depend on these (target variant only), unless the
    # recipe sets ``toolchain: false``.
    implicit_depends: ClassVar[tuple[str, ...]] = ("virtual/toolchain",)
    # Native variants depend on these (e.g. a native compression library).
    native_implicit_depends: ClassVar[tuple[str, ...]] = ()
    # An image class: its ``packages`` and their rdepends (transitively) become
    # build dependencies, and ctx.packages() hands their installed trees over.
    installs_packages: ClassVar[bool] = False
    registry: ClassVar[dict[str, type[BuildClass]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            BuildClass.registry[cls.name] = cls
        # Every class's run() gets the recipe's pre_/post_ hooks, also the
        # classes that replace run() (kernel, kconfig, image): see _with_hooks.
        if "run" in cls.__dict__:
            cls.run = _with_hooks(cls.__dict__["run"])  # type: ignore[method-assign]

    @classmethod
    def version(cls) -> str:
        """Hash of the source files of the class and its bases: editing a class,
        or a helper function beside it in its module, rebuilds its users."""
        # Memoized per class: a build asks once per recipe.
        if cls in _VERSIONS:
            return _VERSIONS[cls]
        files: list[str] = []
        for klass in cls.__mro__:
            if klass is object:
                break
            try:
                path = inspect.getsourcefile(klass)
            except TypeError:
                path = None
            if path and path not in files:
                files.append(path)
        h = hashlib.sha256()
        for path in files:
            with open(path, "rb") as f:
                h.update(os.path.basename(path).encode() + b"\0" + f.read() + b"\0")
        _VERSIONS[cls] = h.hexdigest()[:16]
        return _VERSIONS[cls]

    # --- what a class implements -------------------------------------------
    def script(self, task: str, ctx: StepContext) -> str | None:
        """Shell text for a class task, or None when the task does nothing."""
        return None

    def run(self, task: str, ctx: StepContext) -> None:
        """Run one class task.  Default: the recipe's explicit ``steps`` entry
        if it has one, else the class's script, in the sandbox.  The recipe's
        ``pre_<task>`` / ``post_<task>`` steps run around whatever this does
        (_with_hooks), then finish()."""
        steps = ctx.recipe.get("steps") or {}
        text = steps.get(task) if task in steps else self.script(task, ctx)
        if text:
            ctx.sh(text, env=self.task_env(ctx) or None, cwd=self.step_cwd(ctx))

    def task_env(self, ctx: StepContext) -> dict[str, str]:
        """Variables the class adds to the base environment for its steps,
        the recipe's own and its hooks (e.g. pkg-config's search path)."""
        return {}

    def step_cwd(self, ctx: StepContext) -> str:
        """Where the recipe's own steps and hooks start."""
        return SANDBOX_SRC

    def finish(self, task: str, ctx: StepContext) -> None:
        """Runs after the task's post_ hook: checks and clean-ups that must
        also see what the hook installed (e.g. stripping)."""

    def build_depends(self, recipe, board=None) -> list[str]:
        """Dependencies the class derives from the recipe's parameters and the board."""
        return []

    def signature_extra(self, recipe, board, env=None) -> dict[str, Any]:
        """Extra inputs of the task signatures (e.g. a toolchain's identity)."""
        return {}


_HOOKED: contextvars.ContextVar[int | None] = contextvars.ContextVar("buildsys_hooked_ctx", default=None)


def _with_hooks(run):
    """Wrap a class's run(task, ctx): the recipe's ``pre_<task>`` step, then
    run() (the class's script or the recipe's ``<task>`` step), then
    ``post_<task>``, then the class's finish() -- in the same sandbox layout
    and environment as the class's step (Buildroot's PRE_/POST_*_HOOKS).

    The hooks run once per task: a subclass's run() calling super().run()
    is inside the outer call and does not run them again."""

    @functools.wraps(run)
    def hooked(self: BuildClass, task: str, ctx: StepContext) -> None:
        if _HOOKED.get() == id(ctx):
            return run(self, task, ctx)
        token = _HOOKED.set(id(ctx))
        try:
            steps = ctx.recipe.get("steps") or {}
            env = self.task_env(ctx) or None
            if steps.get(f"pre_{task}"):
                ctx.sh(steps[f"pre_{task}"], env=env, cwd=self.step_cwd(ctx))
            run(self, task, ctx)
            if steps.get(f"post_{task}"):
                ctx.sh(steps[f"post_{task}"], env=env, cwd=self.step_cwd(ctx))
            self.finish(task, ctx)
        finally:
            _HOOKED.reset(token)

    return hooked


BuildClass.run = _with_hooks(BuildClass.run)  # type: ignore[method-assign]


class StepContext:
    """What a class sees while its task runs (implemented by the executor).

    recipe   the resolved Recipe: recipe.get(key), recipe.name, recipe.version,
             recipe.variant ("target" | "native"), recipe.path
    board    the Board (board.name, board.arch, board.get(key))
    task     the task name
    jobs     parallel jobs for make (-j)
    paths    host paths: work, src, obj, dest, home, files, stage, sysroot, native, logs.
             src/obj/dest/home are step-writable: host code must read them
             with fileio.read_beneath() and write there only through
             fileio.write_beneath() (no link is followed); stage is the
             host's own (mounted read-only at /build/stage).
    env      the base sandbox environment (dict)
    """

    recipe: Any
    board: Any
    task: str
    jobs: int
    paths: Any
    env: dict[str, str]

    def sh(self, script: str, env: dict[str, str] | None = None, cwd: str = SANDBOX_SRC) -> None:
        raise NotImplementedError

    def run(self, argv: list[str], env: dict[str, str] | None = None, cwd: str = SANDBOX_SRC) -> None:
        raise NotImplementedError

    def stage_file(self, host_path, name: str | None = None) -> str:
        """Copy a host file into /build/files and return its sandbox path."""
        raise NotImplementedError

    def log(self, text: str) -> None:
        raise NotImplementedError

    def packages(self, names) -> list:
        """(recipe, host path of its installed tree) for the named recipes."""
        raise NotImplementedError

"""What each package adds to an image, the largest files, the kernel: for
``buildsys size`` and for the image class's ``size_budget`` check.

Per package: the bytes it installs in the root filesystem, and an estimate of
what they take compressed in the squashfs -- its files cut into blocks the
way mksquashfs does (full blocks compressed one by one, the tails of files
packed together into fragment blocks), each block compressed with the
image's compressor (xz, gzip: exactly the library; lzo, lz4, zstd: zlib as a
stand-in) and kept raw when that is smaller, plus the names and link targets
compressed as a stand-in for the metadata.  It is an estimate: the real
squashfs shares fragments across packages and deduplicates identical files.

The budget (``size_budget:`` of an image recipe) is on the **disk image**
(``<image>-<board>.img``, what is flashed, alignment and padding included).

What a package adds is what the image keeps of it: the image class leaves
development files out and drops unneeded C library files, and records what
is in the rootfs, by package, in ``<image>-<board>.rootfs.json`` beside the
disk (rootfs_record_name); the report counts those paths only, and says how
many bytes of each package were left out.

Package trees are a step's output: files are read with fileio.read_beneath.
"""
from __future__ import annotations

import lzma
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from .errors import BuildError
from .sbom import read_tree

LARGEST = 10


def human(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1 << 20:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1 << 20):.2f} MiB"


# --- compression estimate ----------------------------------------------------------------
def _compressor(name: str):
    if name in ("xz", "lzma"):
        return lambda block: lzma.compress(block, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    level = 9 if name == "gzip" else 6
    return lambda block: zlib.compress(block, level)


class Squeezer:
    """Bytes files take in a squashfs, added one file at a time (estimate; see the module doc)."""

    def __init__(self, compressor: str = "xz", block_size: int = 131072):
        self.squeeze, self.block_size = _compressor(compressor), block_size
        self.total, self.tails = 0, bytearray()

    def _one(self, block) -> int:
        return min(len(self.squeeze(bytes(block))), len(block)) if block else 0

    def add(self, data: bytes) -> None:
        size = self.block_size
        full = len(data) - len(data) % size
        view = memoryview(data)
        self.total += sum(self._one(view[i:i + size]) for i in range(0, full, size))
        self.tails += view[full:]
        while len(self.tails) >= size:          # a full fragment block
            self.total += self._one(self.tails[:size])
            del self.tails[:size]

    def finish(self, metadata: bytes = b"") -> int:
        return self.total + self._one(self.tails) + self._one(metadata)


def estimate_compressed(files: list[bytes], metadata: bytes = b"", compressor: str = "xz",
                        block_size: int = 131072) -> int:
    """Bytes ``files`` take in a squashfs (estimate; see the module doc)."""
    squeezer = Squeezer(compressor, block_size)
    for data in files:
        squeezer.add(data)
    return squeezer.finish(metadata)


@dataclass(frozen=True)
class PackageSize:
    pn: str
    files: int          # regular files
    links: int          # symlinks
    installed: int      # bytes of its regular files in the rootfs
    compressed: int     # estimated bytes in the squashfs
    left_out: int = 0   # bytes of its files the image left out (development files, unneeded libraries)


def rootfs_record_name(stem: str) -> str:
    """The image's record of its rootfs: {"paths": {path: package}, "left_out": {path: ...}}."""
    return f"{stem}.rootfs.json"


@dataclass(frozen=True)
class FileSize:
    path: str
    size: int
    package: str
    partition: str = ""     # a boot file's partition; "" in the root filesystem
    source: str = ""        # a boot file: its path in the package


def package_sizes(trees: list[tuple[str, Path]], compressor: str = "xz", block_size: int = 131072,
                  in_rootfs: dict[str, str] | None = None) -> tuple[list[PackageSize], list[FileSize]]:
    """Per package (largest compressed first) and every regular file (largest first).

    ``in_rootfs`` {path: package}: what the image kept (its rootfs record);
    the rest of a package counts as left out.  None: all of every package."""
    sizes, files = [], []
    for pn, tree in trees:
        squeezer = Squeezer(compressor, block_size)
        meta, count, links, installed, left_out = [], 0, 0, 0, 0
        for path, kind, content in read_tree(tree):
            if in_rootfs is not None and in_rootfs.get(path) != pn:
                left_out += len(content) if kind == "file" else 0
                continue
            if kind == "file":
                squeezer.add(content)
                count, installed = count + 1, installed + len(content)
                files.append(FileSize(path, len(content), pn))
                meta.append(path.encode())
            else:
                links += 1
                meta.append(path.encode() + b" -> " + content)
        sizes.append(PackageSize(pn, count, links, installed, squeezer.finish(b"\n".join(meta)) if meta else 0,
                                 left_out))
    sizes.sort(key=lambda p: (-p.compressed, p.pn))
    files.sort(key=lambda f: (-f.size, f.path))
    return sizes, files


# --- the report --------------------------------------------------------------------------
@dataclass
class Report:
    image: str
    board: str
    packages: list[PackageSize]
    largest: list[FileSize]                  # the largest rootfs files
    boot: list[FileSize] = field(default_factory=list)   # files the boot partitions carry
    kernel: list[FileSize] = field(default_factory=list)  # the kernel image(s) among them
    disk: tuple[str, int] | None = None      # (file name, bytes) of the disk image
    rootfs: tuple[str, int] | None = None    # (file name, bytes) of the squashfs
    compressor: str = "xz"
    budget: int | None = None

    @property
    def installed(self) -> int:
        return sum(p.installed for p in self.packages)

    @property
    def compressed(self) -> int:
        return sum(p.compressed for p in self.packages)

    def contributors(self) -> list[tuple[str, int]]:
        """What takes room in the disk image, largest first: boot files and
        the root filesystem's packages (estimated compressed)."""
        items = [(f"{f.partition}:{f.path} ({f.package} {f.source})", f.size) for f in self.boot]
        items += [(f"rootfs: {p.pn} ({human(p.installed)} installed, compressed estimate)", p.compressed)
                  for p in self.packages]
        return sorted(items, key=lambda i: (-i[1], i[0]))


def text(report: Report, largest: int = LARGEST) -> str:
    out = [f"{report.image} for {report.board}"]
    if report.disk:
        line = f"  disk image        {report.disk[0]:<40} {human(report.disk[1]):>10}"
        if report.budget:
            line += f"   budget {human(report.budget)} ({100 * report.disk[1] / report.budget:.0f}% used)"
        out.append(line)
    if report.rootfs:
        out.append(f"  root filesystem   {report.rootfs[0]:<40} {human(report.rootfs[1]):>10}   "
                   f"({report.compressor}; packages estimated at {human(report.compressed)})")
    for k in report.kernel:
        out.append(f"  kernel            {k.package + ' ' + k.source:<40} {human(k.size):>10}   "
                   f"on {k.partition} as {k.path}")
    out += ["", f"  {'package':<24} {'files':>6} {'links':>6} {'in rootfs':>12} {'compressed (est.)':>18} "
                f"{'left out':>12}"]
    for p in report.packages:
        out.append(f"  {p.pn:<24} {p.files:>6} {p.links:>6} {human(p.installed):>12} {human(p.compressed):>18} "
                   f"{human(p.left_out) if p.left_out else '-':>12}")
    left = sum(p.left_out for p in report.packages)
    out.append(f"  {'total':<24} {sum(p.files for p in report.packages):>6} "
               f"{sum(p.links for p in report.packages):>6} {human(report.installed):>12} "
               f"{human(report.compressed):>18} {human(left) if left else '-':>12}")
    others = [f for f in report.boot if f not in report.kernel]
    if others:
        out += ["", "  other boot files"]
        out += [f"  {f.partition + ':' + f.path:<40} {human(f.size):>10}  {f.package}" for f in others]
    if report.largest:
        out += ["", f"  {min(largest, len(report.largest))} largest files in the root filesystem"]
        out += [f"  {f.path:<40} {human(f.size):>10}  {f.package}" for f in report.largest[:largest]]
    return "\n".join(out) + "\n"


# --- pictures -----------------------------------------------------------------------------
_COLORS = {"installed": "#9ecae1", "compressed": "#3182bd", "boot": "#fd8d3c", "disk": "#74c476"}


def _bars(report: Report) -> list[tuple[str, list[tuple[str, int]]]]:
    """(label, [(kind, bytes)...]) rows: the disk, the boot files, each package."""
    rows: list[tuple[str, list[tuple[str, int]]]] = []
    if report.disk:
        rows.append((f"disk {report.disk[0]}", [("disk", report.disk[1])]))
    rows += [(f"{f.partition}:{f.path} ({f.package})", [("boot", f.size)]) for f in report.boot]
    rows += [(p.pn, [("installed", p.installed), ("compressed", p.compressed)]) for p in report.packages]
    return rows


def svg(report: Report) -> str:
    """A horizontal bar chart (hand-written SVG, no dependencies)."""
    rows = _bars(report)
    label_w, bar_w, value_w, row_h, top = 300, 420, 190, 22, 56
    peak = max([v for _, bars in rows for _, v in bars] + [1])
    height = top + row_h * sum(len(bars) for _, bars in rows) + 12 * len(rows) + 40
    width = label_w + bar_w + value_w
    title = f"{report.image} for {report.board}: what takes room"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             f"<title>{escape(title)}</title>",
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="10" y="22" font-size="15" font-weight="bold">{escape(title)}</text>']
    legend_x = 10
    for kind, color in _COLORS.items():
        name = {"compressed": "compressed (estimate)", "boot": "boot file", "disk": "disk image"}.get(kind, kind)
        parts.append(f'<rect x="{legend_x}" y="32" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{legend_x + 16}" y="43">{escape(name)}</text>')
        legend_x += 30 + 8 * len(name)
    y = top
    for label, bars in rows:
        parts.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
        for kind, value in bars:
            w = max(1, round(bar_w * value / peak))
            parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 6}" '
                         f'fill="{_COLORS[kind]}"><title>{escape(f"{label}: {value} bytes ({kind})")}</title></rect>')
            parts.append(f'<text x="{label_w + w + 6}" y="{y + 15}">{escape(human(value))}</text>')
            y += row_h
        y += 12
    if report.budget:
        parts.append(f'<text x="10" y="{y + 20}">size budget of the disk image: {escape(human(report.budget))}'
                     "</text>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def dot(report: Report) -> str:
    """The same chart as a graphviz graph (an HTML-like table), for ``dot -Tpng``."""
    rows = _bars(report)
    peak = max([v for _, bars in rows for _, v in bars] + [1])
    cells = []
    for label, bars in rows:
        for i, (kind, value) in enumerate(bars):
            w = max(1, round(400 * value / peak))
            # the bar and a spacer always add up to 401 points: every bar starts at the left
            bar = (f'<TABLE BORDER="0" CELLPADDING="0" CELLSPACING="0"><TR>'
                   f'<TD BGCOLOR="{_COLORS[kind]}" WIDTH="{w}" HEIGHT="14" FIXEDSIZE="TRUE"></TD>'
                   f'<TD WIDTH="{401 - w}" HEIGHT="14" FIXEDSIZE="TRUE"></TD></TR></TABLE>')
            cells.append(f'<TR><TD ALIGN="RIGHT">{escape(label) if i == 0 else ""}</TD><TD>{bar}</TD>'
                         f'<TD ALIGN="LEFT">{escape(human(value))} {kind}</TD></TR>')
    title = escape(f"{report.image} for {report.board}: what takes room")
    return ('digraph size {\n  node [shape=plaintext, fontname="sans-serif", fontsize=11];\n'
            f'  chart [label=<<TABLE BORDER="0" CELLSPACING="2"><TR><TD COLSPAN="3"><B>{title}</B></TD></TR>'
            + "".join(cells) + "</TABLE>>];\n}\n")


# --- the budget ------------------------------------------------------------------------------
def over_budget_message(report: Report, where: str = "", top: int = 8) -> str:
    assert report.disk is not None and report.budget is not None
    name, size = report.disk
    lines = [f"{name} is {human(size)} ({size} bytes), over its size_budget of {human(report.budget)} "
             f"({report.budget} bytes{', ' + where if where else ''}) by {size - report.budget} bytes; "
             "the largest contributors:"]
    lines += [f"  {human(v):>10}  {what}" for what, v in report.contributors()[:top]]
    lines += ["  largest files: " + ", ".join(f"{f.path} {human(f.size)} ({f.package})" for f in report.largest[:5])]
    return "\n".join(lines)


def check_budget(report: Report, where: str = "") -> None:
    """BuildError when the disk image is over the budget."""
    if report.budget is not None and report.disk is not None and report.disk[1] > report.budget:
        raise BuildError(over_budget_message(report, where))


# --- building a report ---------------------------------------------------------------------
def _is_kernel_image(f: FileSize) -> bool:
    return not f.source.endswith((".dtb", "config"))


def session_report(session, recipe, deploy_dir: Path | None = None) -> Report:
    """The report of an image a session planned and built (and deployed to ``deploy_dir``)."""
    import json

    from .errors import UserError
    from .image.disk import parse_size
    from .sbom import boot_files, image_closure

    closure = image_closure(session, recipe)
    compressor = str(recipe.get("rootfs_compressor", "xz"))
    sizes, files = package_sizes([(r.pn, session.package_dir(r.pn)) for r in closure.rootfs], compressor,
                                 int(recipe.get("rootfs_block_size", 131072)),
                                 rootfs_record(session.package_dir(recipe.pn), recipe.name, session.board.name))
    boot = [FileSize(f.path, f.size, f.package, f.partition, f.source) for f in boot_files(session, closure)]
    try:
        kernel_pn: str | None = session.resolver.lookup(recipe.get("kernel") or "virtual/kernel", recipe, None).pn
    except UserError:
        kernel_pn = None
    budget = recipe.get("size_budget")
    report = Report(recipe.name, session.board.name, sizes, files, boot,
                    [f for f in boot if f.package == kernel_pn and _is_kernel_image(f)], compressor=compressor,
                    budget=parse_size(budget) if budget is not None else None)
    manifest = deploy_dir / "manifest.json" if deploy_dir is not None else None
    if manifest is not None and manifest.is_file():
        deployed = json.loads(manifest.read_text()).get("files", {})
        for name, info in sorted(deployed.items()):
            if name.endswith(".img"):
                report.disk = (name, int(info["size"]))
            elif name.endswith(".squashfs"):
                report.rootfs = (name, int(info["size"]))
    return report


def rootfs_record(image_tree: Path, image: str, board: str) -> dict[str, str] | None:
    """{path: package} of the image's rootfs record in its package tree; None
    for an image built before there were records (every file then counts)."""
    import json

    from .fileio import read_beneath

    try:
        data = json.loads(read_beneath(image_tree, rootfs_record_name(f"{image}-{board}")))
    except (FileNotFoundError, ValueError):
        return None
    paths = data.get("paths") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in paths.items()} if isinstance(paths, dict) else None


def check_image_budget(ctx, specs, disk_image: Path, squashfs: Path, in_rootfs: dict[str, str] | None = None) -> None:
    """The image class's check, once the disk is written: over ``size_budget``
    is a BuildError listing the largest contributors."""
    from .fileio import read_beneath
    from .image.disk import parse_size

    r = ctx.recipe
    budget = parse_size(r.get("size_budget"))
    size = disk_image.stat().st_size
    if size <= budget:
        return
    compressor = str(r.get("rootfs_compressor", "xz"))
    sizes, files = package_sizes([(rec.pn, tree) for rec, tree in ctx.packages(r.get("packages", []))],
                                 compressor, int(r.get("rootfs_block_size", 131072)), in_rootfs)
    boot, kernel = [], []
    for spec in specs:
        for fs_path, src in sorted(spec.files.items()):
            name, rel = src.split(":", 1)
            found = ctx.packages([(r.get("kernel") or name) if name == "virtual/kernel" else name])
            if not found:
                continue
            entry = FileSize(fs_path, len(read_beneath(found[0][1], rel.lstrip("/"))), found[0][0].pn, spec.name,
                             rel.lstrip("/"))
            boot.append(entry)
            if name == "virtual/kernel" and _is_kernel_image(entry):
                kernel.append(entry)
    report = Report(r.name, ctx.board.name, sizes, files, boot, kernel, disk=(disk_image.name, size),
                    rootfs=(squashfs.name, squashfs.stat().st_size), compressor=compressor, budget=budget)
    where = r.where("size_budget") if hasattr(r, "where") else ""
    check_budget(report, f"set at {where}" if where else "")

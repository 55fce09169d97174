"""``class: image`` -- a bootable disk image from packages and the board's disk layout.

All the work is in the install task:
  1. merge the packages' trees (conflicts are errors) into the stage dir's
     rootfs/ (host-only, read-only at /build/stage), times set to
     SOURCE_DATE_EPOCH;
  2. finalize it (image/finalize.py): development files out
     (``rootfs_exclude``/``rootfs_keep``), the libraries of virtual/libc no
     program needs out (``prune_libc``); then check every ELF file: the
     board's machine, its interpreter and every DT_NEEDED found as ld.so
     would find it (image/elf.py; docs/images.md);
  3. mksquashfs it, with owners/modes/devices from the packages' permission
     tables as pseudo definitions (no root, no fakeroot);
  4. make each vfat partition with mtools (e.g. the ESP holding the kernel),
     and the ext4 data partition (``data_partition``) with mke2fs;
  5. write the disk with our own GPT writer (GUIDs derived from names) and
     verify it by reading it back.
Outputs in /build/dest: <image>-<board>.img, <image>-<board>.squashfs, the
record of the rootfs by package (<image>-<board>.rootfs.json, size.py) and
the kernel image(s) the disk carries.

Tools come from native recipes (implicit_depends), on PATH in the sandbox.

Interface assumptions (tell the engine owner if they change):
  * ctx.packages(names) -> [(recipe, host path of its installed tree)] for the
    named recipes (virtual names resolved) plus their rdepends;
    recipe.get("permissions") is the recipe's permissions list.
  * ctx.paths.stage is a host-only dir (read-only at /build/stage): Python
    prepares the rootfs and boot files there.  ctx.paths.obj / ctx.paths.dest
    are the host paths of /build/obj and /build/dest, which steps can write:
    Python reads the tools' output from obj only through fileio.*_beneath and
    moves finished files into dest by rename.
  * ctx.env["SOURCE_DATE_EPOCH"] is the image's epoch.
  * build_depends(recipe, board): the recipes the board's disk layout takes
    files from (e.g. virtual/kernel for the ESP, or the image's ``kernel``
    instead).  That kernel is also where check_kernel_cmdline reads boot/config.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from .. import rootfs, size
from ..errors import BuildError, UserError
from ..fileio import copy_beneath, read_beneath, read_text_beneath, sha256_file, write_beneath
from ..image import abslots, authenticode, disk, elf, ext4, finalize, gpt, mbr, squashfs, uki, verity, vfat
from ..schema import Size, Struct
from . import libc as libc_class
from .base import SANDBOX_OBJ, SANDBOX_STAGE, Bool, BuildClass, Int, Str, StrList

DEFAULT_BOOT_RECIPES = ["virtual/kernel"]
KERNEL = "virtual/kernel"
DATA_PARTITION = "data"       # its name, label and (GPT) the seed of its PARTUUID
UKI_STUB_RECIPE = "systemd-boot-stub"     # installs usr/lib/systemd/boot/efi/<uki.STUBS[arch]>


def _plain(value):
    """Board values without the loader's position markers, for signatures."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class Image(BuildClass):
    name = "image"
    installs_packages = True
    implicit_depends = ("squashfs-tools-native", "mtools-native")
    params = {
        "packages": StrList([], "recipes installed in the root filesystem (plus their rdepends)"),
        "rootfs_compressor": Str("xz", "squashfs compressor; the kernel must support it"),
        "rootfs_block_size": Int(131072, "squashfs block size in bytes"),
        "rootfs_exclude": StrList(list(finalize.DEFAULT_EXCLUDE), "development files left out of the rootfs "
                                  "(they stay in the packages): a path from / or a file name, fnmatch "
                                  "globs, a trailing @ for symlinks only; see docs/images.md"),
        "rootfs_keep": StrList([], "paths kept in the rootfs although rootfs_exclude names them"),
        "prune_libc": Bool(True, "drop the libraries of virtual/libc that no program in the image needs "
                                 "(DT_NEEDED, transitively)"),
        "kernel": Str(None, "the recipe the disk layout's virtual/kernel:... files come from (default: the "
                            "board's virtual/kernel), e.g. a kernel with more drivers for a bigger image"),
        "data_partition": Size(None, "add an ext4 partition labelled 'data' after the root partition, this big "
                                     "(e.g. 8M), made reproducibly at build time; none by default"),
        "size_budget": Size(None, "fail the build when the disk image (.img) is larger (bytes, or e.g. 2M, "
                                  "512KiB); the error lists the largest contributors"),
        "ab_slots": Struct({"root_size": Size(None, "each slot's root partition (squashfs + dm-verity)"),
                            "esp_size": Size(abslots.DEFAULT_ESP_SIZE, "each slot's boot (vfat) partition")},
                           None, "an A/B image (docs/updates.md): two slots of fixed size, slot a filled, slot b "
                           "empty; the root is dm-verity protected, on UEFI booted from a unified kernel image",
                           name="ab_slots"),
        # The certificate itself (PEM), not a path: it is in the signature, the key never is.
        "secure_boot_cert": Str("${secure_boot_cert}", "the X.509 certificate (PEM) whose key signs the A/B "
                                "image's UKI for UEFI Secure Boot (docs/updates.md); default: the project's "
                                "secure_boot_cert; \"\": unsigned"),
    }

    @staticmethod
    def boot_recipe(recipe, name: str) -> str:
        """The recipe a layout's ``<name>:path`` file comes from: ``virtual/kernel``
        is the image's ``kernel`` when it names one."""
        kernel = recipe.get("kernel") if recipe is not None else None
        return (kernel or name) if name == KERNEL else name

    # Modules only this class uses, hashed into its version (BuildClass.version
    # covers the class's own module): editing them rebuilds images, not kernels.
    helpers = (elf, ext4, finalize, abslots, uki, verity, authenticode)

    @classmethod
    def version(cls) -> str:
        h = hashlib.sha256(super().version().encode())
        for module in cls.helpers:
            h.update(b"\0" + Path(module.__file__ or "").read_bytes())
        return h.hexdigest()[:16]

    def build_depends(self, recipe, board=None):
        if board is None:
            return [self.boot_recipe(recipe, n) for n in DEFAULT_BOOT_RECIPES]
        names = []
        if recipe is not None and recipe.get("ab_slots"):
            lay = abslots.layout(recipe, board)
            parts = lay.specs
            if lay.kernel_file:     # UEFI: the UKI = the stub + the kernel the board's ESP would carry
                names = [self.boot_recipe(recipe, lay.kernel_file.split(":", 1)[0]), UKI_STUB_RECIPE]
        else:
            _, _, parts = disk.parse_layout(board.get("disk"), board.name)
        for p in parts:
            for src in p.files.values():
                name = self.boot_recipe(recipe, src.split(":", 1)[0])
                if name not in names:
                    names.append(name)
        return names

    @staticmethod
    def partitions(recipe, board) -> tuple[str, int, list[disk.PartSpec]]:
        """The board's disk layout plus what the image adds (the data partition,
        right after the root one: the root's PARTUUID does not move)."""
        table, align, specs = disk.parse_layout(board.get("disk"), board.name)
        size = recipe.get("data_partition")
        if size is None:
            return table, align, specs
        where = recipe.where("data_partition") if hasattr(recipe, "where") else None
        if any(s.name == DATA_PARTITION for s in specs):
            raise UserError(f"board {board.name} already has a partition named {DATA_PARTITION}", where,
                            hint="drop data_partition from the image, or rename the board's partition")
        if table == "mbr" and len(specs) >= 4:
            raise UserError(f"board {board.name}'s MBR has no room for a data partition (four already)", where)
        nbytes = disk.parse_size(size, where)
        try:
            ext4.blocks(nbytes)
        except ValueError as e:
            raise UserError(str(e), where, hint="e.g. data_partition: 8M") from None
        root = next(i for i, s in enumerate(specs) if s.filesystem == "squashfs")
        data = disk.PartSpec(DATA_PARTITION, "linux", "ext4", min_size=nbytes, label=DATA_PARTITION)
        return table, align, specs[:root + 1] + [data] + specs[root + 1:]

    def signature_extra(self, recipe, board, env=None):
        # The disk layout and console are board settings the output depends on.
        extra = {"board": board.name, "arch": board.arch, "disk": _plain(board.get("disk")),
                 "console": board.get("console"), "boot": _plain(board.get("boot"))}
        if recipe is not None and recipe.get("ab_slots"):
            extra["disk_ab"] = _plain(board.get("disk_ab"))
        return extra

    def run(self, task, ctx):
        steps = ctx.recipe.get("steps") or {}
        if task in steps:
            return super().run(task, ctx)
        if task == "install":
            if ctx.recipe.get("ab_slots"):
                self.install_ab(ctx)
            else:
                self.install(ctx)

    # --- the steps ------------------------------------------------------------------
    def install(self, ctx) -> None:
        r, board = ctx.recipe, ctx.board
        sde = int(ctx.env["SOURCE_DATE_EPOCH"])
        # Host-side work happens in the stage dir, which no step can write
        # (mounted read-only at /build/stage); the tools write their output
        # into /build/obj/parts, read back here without following links, and
        # the results are renamed into /build/dest (a rename replaces a
        # planted link instead of writing through it).
        stage, obj = Path(ctx.paths.stage), Path(ctx.paths.obj)
        out = stage / "out"
        stem = f"{r.name}-{board.name}"
        for sub in ("rootfs", "boot-files", "out", "parts"):
            if (stage / sub).exists():
                shutil.rmtree(stage / sub)
        out.mkdir(parents=True)
        (stage / "parts").mkdir()
        table, align, specs = self.partitions(r, board)
        root_index = next(i for i, s in enumerate(specs) if s.filesystem == "squashfs")
        if table == "mbr":
            signature = mbr.disk_signature(board.name)
            root_id = mbr.partuuid(signature, root_index + 1)
        else:
            root_id = str(gpt.partition_guid(board.name, specs[root_index].name))
        variables = self.text_variables(board, root_id)

        squash, contents_record = self.make_rootfs(ctx, stage, obj, sde)
        shutil.copyfile(squash, out / f"{stem}.squashfs")
        # What is in the rootfs, by package, and what was left out: for the
        # size report, the SBOM and the manifest (the packages hold more).
        (out / size.rootfs_record_name(stem)).write_text(json.dumps(contents_record, indent=1, sort_keys=True)
                                                         + "\n")

        contents: dict[str, Path | None] = {}
        for spec in specs:
            if spec.filesystem == "squashfs":
                contents[spec.name] = squash
            elif spec.filesystem == "vfat":
                contents[spec.name] = self.make_vfat(ctx, spec, stage, obj, out, sde, stem, align, variables)
            elif spec.filesystem == "ext4":
                contents[spec.name] = self.make_ext4(ctx, spec, stage, obj, sde)
            else:
                contents[spec.name] = None
        sizes = {s.name: max(s.min_size, os.path.getsize(p) if (p := contents[s.name]) else 0) for s in specs}
        self.check_kernel_cmdline(ctx, root_id)
        pow2 = disk.power_of_two(board.get("disk"))
        if table == "mbr":
            mparts, total = mbr.plan([(mbr.type_byte(s.type), sizes[s.name], s.bootable) for s in specs], align)
            total = _pow2(total) if pow2 else total
            disk.assemble_mbr(out / f"{stem}.img", signature,
                              [(p, contents[s.name]) for p, s in zip(mparts, specs, strict=True)], total)
            ctx.log(f"disk {stem}.img: {total * mbr.SECTOR} bytes, MBR signature {signature:08x}, " + ", ".join(
                f"{s.name} {p.sectors * mbr.SECTOR} bytes at {p.first_lba * mbr.SECTOR} (type {p.type:#04x})"
                for p, s in zip(mparts, specs, strict=True)))
        else:
            gsizes = [(s.name, gpt.type_guid(s.type, board.arch), gpt.partition_guid(board.name, s.name),
                       sizes[s.name]) for s in specs]
            gparts, total = gpt.plan(gsizes, align)
            total = _pow2(total) if pow2 else total
            layout = disk.assemble(out / f"{stem}.img", gpt.disk_guid(r.name, board.name),
                                   [(p, contents[s.name]) for p, s in zip(gparts, specs, strict=True)], total)
            ctx.log(f"disk {stem}.img: {total * gpt.SECTOR} bytes, " + ", ".join(
                f"{p.name} {p.sectors * gpt.SECTOR} bytes at {p.offset} ({p.guid})" for p in layout.partitions))
        if r.get("size_budget") is not None:     # on the disk image; the error names the largest contributors
            size.check_image_budget(ctx, specs, out / f"{stem}.img", out / f"{stem}.squashfs",
                                    contents_record["paths"])
        dest = Path(ctx.paths.dest)
        for item in sorted(out.iterdir()):
            os.replace(item, dest / item.name)

    def install_ab(self, ctx) -> None:
        """An A/B image (``ab_slots``; image/abslots.py, docs/updates.md): slot a
        filled, slot b zeros, the data partition shared.  Besides the .img and
        .squashfs, the deploy outputs are what an update bundle carries:
        <stem>.esp.vfat (slot a's boot partition), <stem>.root.img (squashfs +
        dm-verity) and <stem>.slot.json describing them."""
        r, board = ctx.recipe, ctx.board
        ab_where = r.where("ab_slots") if hasattr(r, "where") else None
        sde = int(ctx.env["SOURCE_DATE_EPOCH"])
        stage, obj = Path(ctx.paths.stage), Path(ctx.paths.obj)
        out = stage / "out"
        stem = f"{r.name}-{board.name}"
        for sub in ("rootfs", "boot-files", "out", "parts"):
            if (stage / sub).exists():
                shutil.rmtree(stage / sub)
        out.mkdir(parents=True)
        (stage / "parts").mkdir()
        lay = abslots.layout(r, board)
        if lay.table != "gpt":
            raise UserError(f"board {board.name}'s A/B layout is {lay.table}; A/B images need GPT "
                            "(partition names find the slots)", ab_where)
        root_size, esp_size = abslots.sizes(r)
        compatible, version = f"{board.name}/{r.name}", str(r.get("version") or "0")

        # Every partition's place is known before anything is built (fixed slot
        # sizes); only shared vfat partitions (a board's own disk_ab) may grow
        # with their files, and the boot entries are only needed on UEFI, where
        # the derived layout has none.
        def plan(sizes):
            gsizes = [(s.name, gpt.type_guid(s.type, board.arch), gpt.partition_guid(board.name, s.name),
                       sizes.get(s.name, s.min_size)) for s in lay.specs]
            return gpt.plan(gsizes, lay.align)

        extra = {"/usr/share/update/layout": abslots.layout_text(lay, compatible, version).encode()}
        if lay.backend == "efi":
            planned, _ = plan({})
            for which, data in abslots.boot_vars(board.name, lay, planned).items():
                extra[f"/usr/share/update/boot-{which}.var"] = data
        squash, contents_record = self.make_rootfs(ctx, stage, obj, sde, extra)
        shutil.copyfile(squash, out / f"{stem}.squashfs")
        (out / size.rootfs_record_name(stem)).write_text(json.dumps(contents_record, indent=1, sort_keys=True)
                                                         + "\n")

        # The root: squashfs, padded, then the verity superblock and hash tree.
        root_img = stage / "parts" / "root.img"
        shutil.copyfile(squash, root_img)
        v = verity.append(root_img, verity.salt_for(r.name, board.name, "verity"))
        if v.size > root_size:
            raise UserError(f"the root filesystem does not fit its slot: {v.size} bytes (squashfs "
                            f"{os.path.getsize(squash)} + dm-verity {v.size - v.data_blocks * verity.BLOCK}) > "
                            f"root_size {root_size}", ab_where,
                            hint="raise ab_slots: root_size (devices in the field have the old size: a bigger "
                                 "slot needs a new factory image), or make the rootfs smaller")
        root_a = str(gpt.partition_guid(board.name, lay.root["a"]))
        cmdline = abslots.cmdline(board, root_a, v, "a")
        root_b = str(gpt.partition_guid(board.name, lay.root["b"]))
        cmdline_b = abslots.cmdline(board, root_b, v, "b")
        ctx.log(f"slot a: root {lay.root['a']} = squashfs {os.path.getsize(squash)} bytes + dm-verity, "
                f"{v.data_blocks} data blocks, root hash {v.root_hash}; cmdline: {cmdline}")

        uki_files: dict[str, Path] = {}
        if lay.uki_path:
            # One ESP image for both slots (an update writes it to either):
            # each slot's UKI, and slot a's at the removable path.
            uki_a = self.make_uki(ctx, lay, stage, sde, cmdline, r.name, version, "uki-a.efi")
            uki_b = self.make_uki(ctx, lay, stage, sde, cmdline_b, r.name, version, "uki-b.efi")
            uki_files = {lay.uki_path: uki_a, abslots.SLOT_UKI["a"]: uki_a, abslots.SLOT_UKI["b"]: uki_b}
            shutil.copyfile(uki_a, out / f"{stem}.efi")
        variables = {"root": "/dev/dm-0", "root_partuuid": root_a, "console": board.get("console") or "",
                     "cmdline": cmdline}
        contents: dict[str, Path | None] = {}
        for spec in lay.specs:
            slot = lay.slot_of.get(spec.name)
            if slot == "b":
                contents[spec.name] = None          # zeros: empty until the first update
            elif spec.filesystem == "squashfs":
                contents[spec.name] = root_img
            elif spec.filesystem == "vfat":
                extra_files = uki_files if spec.name == lay.esp["a"] else {}
                # A slot's filesystem is as big as its files (the partition is
                # esp_size): the update bundle carries it, and the updater
                # writes and reads back only its bytes.
                fs_spec = dataclasses.replace(spec, min_size=0) if slot is not None else spec
                vfat_img = self.make_vfat(ctx, fs_spec, stage, obj, out, sde, stem, lay.align, variables,
                                          extra_files)
                contents[spec.name] = vfat_img
                if slot is not None and os.path.getsize(vfat_img) > gpt.align_up(esp_size, lay.align):
                    raise UserError(f"partition {spec.name}: its files take {os.path.getsize(vfat_img)} "
                                    f"bytes, more than esp_size {esp_size}", ab_where,
                                    hint="raise ab_slots: esp_size")
            elif spec.filesystem == "ext4":
                contents[spec.name] = self.make_ext4(ctx, spec, stage, obj, sde)
            else:
                contents[spec.name] = None
        sizes = {s.name: max(s.min_size, os.path.getsize(p) if (p := contents[s.name]) else 0) for s in lay.specs}
        gparts, total = plan(sizes)
        if lay.backend == "efi":
            planned, _ = plan({})
            if planned != gparts:
                raise BuildError("the A/B partitions moved after the boot entries were written")
        self.check_ab_kernel(ctx, lay)
        table = disk.assemble(out / f"{stem}.img", gpt.disk_guid(r.name, board.name),
                              [(p, contents[s.name]) for p, s in zip(gparts, lay.specs, strict=True)], total)
        ctx.log(f"disk {stem}.img: {total * gpt.SECTOR} bytes, " + ", ".join(
            f"{p.name} {p.sectors * gpt.SECTOR} bytes at {p.offset} ({p.guid})" for p in table.partitions))

        shutil.copyfile(root_img, out / f"{stem}.root.img")
        slot_record: dict = {"format": 1, "compatible": compatible, "version": version, "backend": lay.backend,
                             "root": {"file": f"{stem}.root.img", "partition": "root", "size": v.size,
                                      "sha256": sha256_file(root_img), "verity_root_hash": v.root_hash,
                                      "verity_salt": v.salt, "data_blocks": v.data_blocks,
                                      "hash_start": v.hash_start},
                             "cmdline": {"a": cmdline, "b": cmdline_b} if lay.uki_path else cmdline}
        if lay.esp["a"] is not None:
            esp_img = contents[lay.esp["a"]]
            assert esp_img is not None
            shutil.copyfile(esp_img, out / f"{stem}.esp.vfat")
            slot_record["esp"] = {"file": f"{stem}.esp.vfat", "partition": "esp", "size": os.path.getsize(esp_img),
                                  "sha256": sha256_file(esp_img)}
        (out / f"{stem}.slot.json").write_text(json.dumps(slot_record, indent=1, sort_keys=True) + "\n")
        if r.get("size_budget") is not None:
            size.check_image_budget(ctx, lay.specs, out / f"{stem}.img", out / f"{stem}.squashfs",
                                    contents_record["paths"])
        dest = Path(ctx.paths.dest)
        for item in sorted(out.iterdir()):
            os.replace(item, dest / item.name)

    def make_uki(self, ctx, lay, stage: Path, sde: int, cmdline: str, image: str, version: str,
                 name: str = "uki.efi") -> Path:
        """The slot's unified kernel image: systemd-stub + .osrel + .cmdline + the
        kernel (image/uki.py), in stage/boot-files."""
        assert lay.kernel_file is not None
        stub_name = uki.STUBS.get(ctx.board.arch)
        stubs = ctx.packages([UKI_STUB_RECIPE])
        if not stubs or stub_name is None:
            raise UserError(f"no {UKI_STUB_RECIPE} package for {ctx.board.arch}", hint="it makes the UKI's stub")
        kernel_recipe, kernel_rel = lay.kernel_file.split(":", 1)
        kernels = ctx.packages([self.boot_recipe(ctx.recipe, kernel_recipe)])
        if not kernels:
            raise UserError(f"no package for '{kernel_recipe}' (the UKI's kernel)")
        try:
            stub = read_beneath(stubs[0][1], f"usr/lib/systemd/boot/efi/{stub_name}")
            kernel = read_beneath(kernels[0][1], kernel_rel.lstrip("/"))
        except FileNotFoundError as e:
            raise UserError(f"the UKI needs {e.filename}, which its package does not install") from None
        tree = stage / "rootfs"
        try:
            osrel = read_text_beneath(tree, "etc/os-release")
        except FileNotFoundError:
            osrel = "ID=buildsys\nNAME=buildsys\n"
        osrel = osrel.rstrip("\n") + f"\nIMAGE_ID={image}\nIMAGE_VERSION={version}\n"
        try:
            data = uki.make(stub, kernel, cmdline, osrel)
        except ValueError as e:
            raise BuildError(f"cannot make the UKI from {stubs[0][0].pn} and {kernels[0][0].pn}: {e}") from None
        data = self.sign_efi(ctx, data)
        files_dir = stage / "boot-files"
        files_dir.mkdir(parents=True, exist_ok=True)
        path = files_dir / name
        path.write_bytes(data)
        os.utime(path, (sde, sde))
        ctx.log(f"UKI: {stubs[0][0].pn} {stub_name} + {kernels[0][0].pn} {kernel_rel}: {len(data)} bytes")
        return path

    def sign_efi(self, ctx, data: bytes) -> bytes:
        """An EFI binary the image makes, signed for UEFI Secure Boot when the
        recipe's ``secure_boot_cert`` is set: Authenticode, deterministic
        (image/authenticode.py), with this machine's key for that certificate
        (secureboot.key_for: local.yaml's secure_boot_key; never logged)."""
        cert = ctx.recipe.get("secure_boot_cert")
        if not cert:
            return data
        from .. import secureboot

        try:
            signed = authenticode.sign(data, secureboot.key_for(cert), cert.encode())
        except ValueError as e:
            raise BuildError(f"cannot sign the UKI for secure boot: {e}") from None
        ctx.log(f"signed for secure boot (Authenticode, SHA-256): certificate {secureboot.cert_sha256(cert)[:16]}")
        return signed

    def check_ab_kernel(self, ctx, lay) -> None:
        """The UKI's .cmdline names the root; a kernel with a root in its built-in
        command line (the board's plain kernel) would fight it."""
        if not lay.kernel_file:
            return
        kernel = self.boot_recipe(ctx.recipe, lay.kernel_file.split(":", 1)[0])
        for rec, tree in ctx.packages([kernel]):
            try:
                config = read_text_beneath(tree, "boot/config")
            except FileNotFoundError:
                continue
            m = re.search(r'^CONFIG_CMDLINE="(.*)"$', config, re.M)
            if m and "root=" in m.group(1):
                raise UserError(f"{rec.pn}'s built-in command line names a root ({m.group(1)!r}); an A/B image's "
                                "UKI names the dm-verity root itself",
                                ctx.recipe.where("kernel") if hasattr(ctx.recipe, "where") else None,
                                hint="kernel: linux-ab (CONFIG_CMDLINE=\"\")")

    @staticmethod
    def text_variables(board, root_id: str) -> dict[str, str]:
        """${...} values for the partitions' ``text`` files."""
        variables = {"root": f"PARTUUID={root_id}", "root_partuuid": root_id, "console": board.get("console") or ""}
        cmdline = (board.get("boot") or {}).get("cmdline", "")
        variables["cmdline"] = _substitute(str(cmdline), variables, "boot: cmdline")
        return variables

    def make_rootfs(self, ctx, stage: Path, obj: Path, sde: int,
                    extra_files: dict[str, bytes] | None = None) -> tuple[Path, dict]:
        """The squashfs of the packages' merged trees; ``extra_files`` {path: bytes}
        are files the image itself adds (owned by the image recipe)."""
        r = ctx.recipe
        trees = ctx.packages(r.get("packages", []))
        tree = stage / "rootfs"
        owners = rootfs.merge([(rec.pn, path) for rec, path in trees], tree, sde)
        gone = self.finalize_tree(ctx, tree, trees, owners)
        for path, data in sorted((extra_files or {}).items()):
            rel = path.strip("/")
            if path in owners or os.path.lexists(tree / rel):
                raise UserError(f"{owners.get(path, 'a package')} installs {path}, which the image writes itself",
                                hint="drop it from that package")
            # The tree is ours (stage, host-only): parents are plain dirs we made or merged.
            for parent in reversed(Path(rel).parents[:-1]):
                d = tree / parent
                if not d.exists():
                    d.mkdir(mode=0o755)
                    os.utime(d, (sde, sde))
            (tree / rel).write_bytes(data)
            os.chmod(tree / rel, 0o644)
            os.utime(tree / rel, (sde, sde))
            owners[path] = r.name
        entries = []
        for rec, _ in trees:
            entries += rootfs.permission_entries(rec.pn, rec.get("permissions"), rec.where("permissions")
                                                 if hasattr(rec, "where") else None)
        # A package's permissions may name a file the image left out.
        entries = [e for e in entries if e.kind != "m" or "/" + e.path.strip("/") not in gone]
        rootfs.check_entries(tree, entries)
        check_elves(tree, ctx.board.arch, owners, gone,
                    lambda soname, info: self.providers(ctx, trees, soname, info))
        all_root = all(e.uid == 0 and e.gid == 0 for e in entries)
        if not all_root:
            entries = rootfs.full_table(tree, entries)
        try:
            (stage / "rootfs.pseudo").write_text(squashfs.pseudo_text(entries))
            argv = squashfs.mksquashfs_argv(f"{SANDBOX_STAGE}/rootfs", f"{SANDBOX_OBJ}/parts/rootfs.squashfs",
                                            f"{SANDBOX_STAGE}/rootfs.pseudo", r.get("rootfs_compressor", "xz"),
                                            int(r.get("rootfs_block_size", 131072)), all_root=all_root)
        except ValueError as e:
            raise UserError(str(e), r.where("rootfs_compressor") if hasattr(r, "where") else None) from None
        # A fresh, empty parts/ for the tool: whatever a step left there goes.
        _fresh_dir(obj, "parts")
        ctx.run(argv, env=squashfs.env(sde), cwd=SANDBOX_OBJ)
        out = stage / "parts" / "rootfs.squashfs"
        copy_beneath(obj, "parts/rootfs.squashfs", out)
        def file_or_link(path: str) -> bool:
            host = tree / path.lstrip("/")
            return host.is_symlink() or host.is_file()

        paths = {p: o for p, o in sorted(owners.items()) if file_or_link(p)}
        left_out = {p: {"package": owners.get(p, ""), "why": why} for p, why in sorted(gone.items())}
        return out, {"format": 1, "paths": paths, "left_out": left_out}

    def finalize_tree(self, ctx, tree: Path, trees, owners: dict[str, str]) -> dict[str, str]:
        """Development files out, unneeded C library files out (image/finalize.py);
        return {removed path: why}."""
        r = ctx.recipe
        gone = finalize.exclude(tree, r.get("rootfs_exclude", finalize.DEFAULT_EXCLUDE), r.get("rootfs_keep", []))
        if gone:
            ctx.log(f"rootfs: left out {len(gone)} development files and dirs: " + ", ".join(sorted(gone)))
        libcs = {rec.pn: rec for rec, _ in trees if LIBC in (rec.get("provides") or [])}
        if libcs and r.get("prune_libc", True):
            keep_with = {"libc.so.6": ["libgcc_s.so.1"]}
            pruned = finalize.prune_unneeded(tree, ctx.board.arch, owners, set(libcs), keep_with)
            kept = sorted(p for p, o in owners.items() if o in libcs and p not in pruned
                          and os.path.lexists(tree / p.lstrip("/")) and not (tree / p.lstrip("/")).is_dir())
            ctx.log(f"rootfs: {', '.join(sorted(libcs))}: kept {', '.join(kept) or 'nothing'}; dropped "
                    f"{', '.join(pruned) or 'nothing'} (no program needs them)")
            gone.update({p: f"prune_libc ({owners[p]})" for p in pruned})
        return gone

    @staticmethod
    def providers(ctx, trees, soname: str, info) -> list[str]:
        """Recipes of this build dir's package store that install ``soname``
        in a library dir, for the board's machine (the hint of a missing one)."""
        stores = {Path(path).parent for _, path in trees}
        triplet = elf.TRIPLETS.get(ctx.board.arch, "")
        dirs = ("lib", "usr/lib", "usr/local/lib", f"lib/{triplet}", f"usr/lib/{triplet}")
        found: set[str] = set()
        for store in stores:
            for meta_path in sorted(store.glob("*.json")):
                try:
                    meta = json.loads(meta_path.read_text())
                except (OSError, ValueError):
                    continue
                if meta.get("variant", "target") != "target" or not meta.get("pn"):
                    continue
                pkg = store / meta_path.stem
                for d in dirs:
                    real = elf.resolve(pkg, f"/{d}/{soname}")
                    if real is None or not (pkg / real.lstrip("/")).is_file():
                        continue
                    try:
                        other = elf.read(pkg / real.lstrip("/"))
                    except (OSError, ValueError):
                        continue
                    if other is not None and (other.machine, other.bits) == (info.machine, info.bits):
                        found.add(meta["pn"])
                        break
        return sorted(found)

    def make_vfat(self, ctx, spec, stage: Path, obj: Path, out: Path, sde: int, stem: str, align: int,
                  variables: dict[str, str] | None = None, extra: dict[str, Path] | None = None) -> Path:
        """A vfat image of the partition's files and text; ``extra`` {path in
        the filesystem: file in stage/boot-files} adds files the image made
        (an A/B image's UKI)."""
        staged, sizes = {}, []
        files_dir = stage / "boot-files"
        files_dir.mkdir(parents=True, exist_ok=True)
        for fs_path, host in sorted((extra or {}).items()):
            staged[fs_path] = f"{SANDBOX_STAGE}/boot-files/{host.relative_to(files_dir)}"
            sizes.append(host.stat().st_size)
        for i, (fs_path, template) in enumerate(sorted(spec.text.items())):
            copy = files_dir / f"text-{i}-{Path(fs_path).name}"
            copy.write_text(_substitute(template, variables or {}, f"partition {spec.name}: {fs_path}"))
            os.utime(copy, (sde, sde))
            staged[fs_path] = f"{SANDBOX_STAGE}/boot-files/{copy.name}"
            sizes.append(copy.stat().st_size)
        for i, (fs_path, src) in enumerate(sorted(spec.files.items())):
            layout_name, rel = src.split(":", 1)
            recipe_name = self.boot_recipe(ctx.recipe, layout_name)
            found = ctx.packages([recipe_name])
            if not found:
                raise UserError(f"partition {spec.name}: no package for '{recipe_name}'")
            rel = rel.lstrip("/")
            name = Path(rel).name
            # A private copy, read from the package tree without following a
            # link (a package is a step's output): mcopy -m takes its time
            # from the file, so clamp it here.
            copy = files_dir / f"{i}-{name}"
            try:
                copy_beneath(found[0][1], rel, copy)
            except FileNotFoundError:
                raise UserError(f"partition {spec.name}: {found[0][0].pn} does not install /{rel}",
                                hint=f"needed for {fs_path}") from None
            os.utime(copy, (sde, sde))
            staged[fs_path] = f"{SANDBOX_STAGE}/boot-files/{copy.name}"
            sizes.append(copy.stat().st_size)
            if layout_name in DEFAULT_BOOT_RECIPES and not (out / name).exists():
                # The kernel (and dtbs) beside the disk, for -kernel boots.
                shutil.copyfile(copy, out / name)
                os.utime(out / name, (sde, sde))
        root_sectors = vfat.root_dir_sectors(staged)
        sectors = max(vfat.size_sectors(sizes, len(vfat.directories(staged)), root_sectors),
                      -(-spec.min_size // vfat.SECTOR))
        # The partition is rounded up to the alignment anyway: let the filesystem fill it.
        sectors = gpt.align_up(sectors, align // gpt.SECTOR)
        rel = f"parts/{spec.name}.vfat"
        # Zero-filled beforehand: mformat -C leaves garbage in the last sector (vfat.argvs).
        write_beneath(obj, rel, bytes(sectors * vfat.SECTOR))
        for argv in vfat.argvs(f"{SANDBOX_OBJ}/{rel}", staged, sectors, spec.label,
                               vfat.serial_for(f"{stem}/{spec.name}"), root_sectors=root_sectors, create=False):
            ctx.run(argv, env=vfat.env(sde), cwd=SANDBOX_OBJ)
        result = stage / "parts" / f"{spec.name}.vfat"
        copy_beneath(obj, rel, result)
        return result

    def make_ext4(self, ctx, spec, stage: Path, obj: Path, sde: int) -> Path:
        """An empty ext4 filesystem of the partition's size (image/ext4.py)."""
        board, image = ctx.board.name, ctx.recipe.name
        fs_id, seed = ext4.fs_uuid(board, image, spec.name), ext4.hash_seed(board, image, spec.name)
        rel = f"parts/{spec.name}.ext4"
        ctx.run(ext4.mke2fs_argv(f"{SANDBOX_OBJ}/{rel}", spec.label, fs_id, seed, ext4.blocks(spec.min_size)),
                env=ext4.env(sde), cwd=SANDBOX_OBJ)
        result = stage / "parts" / f"{spec.name}.ext4"
        copy_beneath(obj, rel, result)
        try:
            sb = ext4.read_superblock(result)
        except ValueError as e:
            raise BuildError(f"mke2fs made no ext4 filesystem: {e}") from None
        if (sb.fs_id, sb.label, sb.hash_seed, sb.mkfs_time) != (fs_id, spec.label, seed, sde):
            raise BuildError(f"the {spec.name} filesystem is not the one asked for: {sb}")
        ctx.log(f"{spec.name}: ext4, {sb.blocks} blocks of {sb.block_size}, UUID {sb.fs_id}, label {sb.label}")
        return result

    def check_kernel_cmdline(self, ctx, root_id) -> None:
        """A kernel that names its root by PARTUUID must name ours: fail at build
        time rather than with "VFS: Unable to mount root fs" at boot."""
        kernel = self.boot_recipe(ctx.recipe, KERNEL)
        if kernel not in self.build_depends(ctx.recipe, ctx.board):
            return      # the disk carries no kernel of ours (e.g. a firmware-only layout)
        for rec, tree in ctx.packages([kernel]):
            try:
                config = read_text_beneath(tree, "boot/config")
            except FileNotFoundError:
                continue
            m = re.search(r'^CONFIG_CMDLINE="(.*)"$', config, re.M)
            cmdline = m.group(1) if m else ""
            found = re.search(r"root=PARTUUID=([0-9a-fA-F-]+)", cmdline)
            if found and found.group(1).lower() != str(root_id):
                raise BuildError(f"{rec.pn}'s built-in command line names root=PARTUUID={found.group(1)}, but "
                                 f"{ctx.board.name}'s root partition is {root_id}; fix the kernel's cmdline fragment")
            boot_cmdline = self.text_variables(ctx.board, str(root_id))["cmdline"]
            if cmdline and boot_cmdline and cmdline != boot_cmdline:
                # QEMU boots the built-in line, the board's boot loader the
                # board's: they must not drift apart.
                raise BuildError(f"{rec.pn}'s built-in command line {cmdline!r} differs from {ctx.board.name}'s "
                                 f"boot: cmdline {boot_cmdline!r}; fix the kernel's cmdline fragment")
            # The last console= is /dev/console, where the shell runs.
            consoles = re.findall(r"console=(\w+)", cmdline)
            want = ctx.board.get("console")
            if consoles and want and consoles[-1] != want:
                raise BuildError(f"{rec.pn}'s built-in command line uses console={consoles[-1]}, "
                                 f"the board {ctx.board.name} says console: {want}")


def _fresh_dir(root: Path, name: str) -> None:
    """An empty dir ``root/name`` (root is step-writable: never follow what is there)."""
    path = root / name
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    path.mkdir()


def _pow2(sectors: int) -> int:
    return 1 << (sectors - 1).bit_length()


def _substitute(template: str, variables: dict[str, str], what: str) -> str:
    def one(m):
        if m.group(1) not in variables:
            raise UserError(f"{what}: unknown variable ${{{m.group(1)}}}",
                            hint="known: " + ", ".join(sorted(variables)))
        return variables[m.group(1)]

    return re.sub(r"\$\{(\w+)\}", one, template)


ELF_MACHINES = elf.MACHINES     # the former name


def check_elves(tree: Path, arch: str, owners: dict[str, str] | None = None,
                excluded: dict[str, str] | None = None, providers=None) -> None:
    """Every ELF file in the rootfs is built for the board's architecture, a
    dynamically linked one finds its interpreter, and every DT_NEEDED library
    resolves as ld.so would resolve it (RPATH/RUNPATH, then /lib and
    /usr/lib): a host binary or a missing library fails here rather than as
    "No working init found" or "error while loading shared libraries" at boot.

    ``owners`` {path: package} and ``excluded`` {path: pattern} make the
    messages say where a program comes from and what dropped a library;
    ``providers(soname, info)`` names the recipes that install one."""
    want = elf.MACHINES.get(arch)
    try:
        elves = list(elf.walk(tree))
    except ValueError as e:
        raise BuildError(f"bad ELF file in the rootfs: {e}") from None
    loaded = elf.preloaded(tree, [info for _, _, info in elves])
    for path, _, info in elves:
        if want is not None and info.machine != want:
            raise BuildError(f"{path} is an ELF for machine {info.machine}, not {arch} ({want})")
        origin = f" (from {owners[path]})" if owners and path in owners else ""
        if info.interp and elf.resolve(tree, info.interp) is None:
            raise BuildError(f"{path}{origin} needs the interpreter {info.interp}, which no package installs; "
                             f"the C library's loader comes from {LIBC}: add libc to the image's packages")
        dirs = elf.search_dirs(path, info, arch)
        for soname in info.needed:
            if elf.find_library(tree, soname, dirs, info, loaded) is None:
                raise BuildError(f"{path}{origin} needs {soname}, which is not in the image (ld.so searches "
                                 f"{', '.join(dirs)}); " + _missing_hint(soname, info, owners, path, excluded,
                                                                         providers))


LIBC = "virtual/libc"


def _missing_hint(soname: str, info, owners, path: str, excluded, providers) -> str:
    for gone, pattern in sorted((excluded or {}).items()):
        if gone.rsplit("/", 1)[-1] == soname:
            return f"the image's rootfs_exclude pattern '{pattern}' dropped {gone}: add it to rootfs_keep"
    if soname in libc_class.SONAMES:
        return f"it is part of the C library, {LIBC}: add libc to the image's packages"
    names = providers(soname, info) if providers else []
    owner = owners.get(path) if owners else None
    if names:
        return f"{' and '.join(names)} install{'s' if len(names) == 1 else ''} it: add it to the image's packages" \
               + (f" or to {owner}'s rdepends" if owner else "")
    return "no recipe this build knows installs it: a library recipe must install it in /lib or /usr/lib"

"""`buildsys diff`: recipes, root filesystem, kernel config and deployed files between two images."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_reproduce import CONFIG, build_image, env_for, image_project, needs_tools

from buildsys import imagediff
from conftest import run_buildsys

LISTING = """\
drwxr-xr-x 0/0                      61 2024-01-01 00:00 squashfs-root
drwxr-xr-x 0/0                      36 2024-01-01 00:00 squashfs-root/bin
-rwsr-xr-x 0/0                  812344 2024-01-01 00:00 squashfs-root/bin/busybox
lrwxrwxrwx 0/0                       7 2024-01-01 00:00 squashfs-root/bin/sh -> busybox
-rw-r--r-- 1000/100                  3 2024-01-01 00:00 squashfs-root/etc/a b
crw------- 0/0                   5,  1 2024-01-01 00:00 squashfs-root/dev/console
"""


def test_parse_unsquashfs_listing():
    entries = imagediff.parse_unsquashfs_listing(LISTING)
    assert list(entries) == ["/bin", "/bin/busybox", "/bin/sh", "/etc/a b", "/dev/console"]
    assert entries["/bin/busybox"] == imagediff.FsEntry("/bin/busybox", "-", "rwsr-xr-x", "0/0", 812344)
    assert entries["/bin/sh"].kind == "l" and entries["/bin/sh"].target == "busybox" and entries["/bin/sh"].size == 0
    assert entries["/etc/a b"].owner == "1000/100" and entries["/etc/a b"].size == 3
    assert entries["/dev/console"].kind == "c" and entries["/dev/console"].device == "5,1"


@pytest.mark.skipif(shutil.which("mksquashfs") is None, reason="needs squashfs-tools")
def test_compare_two_squashfs_images(tmp_path):
    def image(name: str, files: dict[str, str], links: dict[str, str], pseudo: tuple[str, ...] = ()) -> Path:
        root = tmp_path / name
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        for rel, target in links.items():
            os.symlink(target, root / rel)
        out = tmp_path / f"{name}.squashfs"
        argv = ["mksquashfs", str(root), str(out), "-all-root", "-noappend", "-quiet", "-no-progress"]
        subprocess.run(argv + [arg for line in pseudo for arg in ("-p", line)], check=True, capture_output=True,
                       env=dict(os.environ, SOURCE_DATE_EPOCH="0"))
        return out

    a = image("a", {"bin/tool": "12345", "etc/same": "same", "etc/gone": "x", "etc/grow": "1"}, {"bin/sh": "tool"})
    b = image("b", {"bin/tool": "54321", "etc/same": "same", "etc/new": "new", "etc/grow": "1234"},
              {"bin/sh": "other"}, pseudo=("dev d 755 0 0", "dev/console c 600 0 0 5 1"))
    result = imagediff.compare_rootfs(imagediff.list_squashfs(a), imagediff.list_squashfs(b), a, b)
    assert [e["path"] for e in result["added"]] == ["/dev", "/dev/console", "/etc/new"]
    assert [e["path"] for e in result["removed"]] == ["/etc/gone"]
    changed = {e["path"]: e for e in result["changed"]}
    assert changed["/bin/tool"]["changed"] == ["content"] and changed["/bin/tool"]["delta"] == 0
    assert changed["/etc/grow"]["changed"] == ["size"] and changed["/etc/grow"]["delta"] == 3
    assert changed["/bin/sh"]["target"] == ["tool", "other"]
    assert "/etc/same" not in changed and result["content_compared"]
    assert result["size"] == [5 + 4 + 1 + 1, 5 + 4 + 3 + 4]
    # without the images, equal sizes are not compared by content
    result = imagediff.compare_rootfs(imagediff.list_squashfs(a), imagediff.list_squashfs(b))
    assert "/bin/tool" not in {e["path"] for e in result["changed"]} and not result["content_compared"]


def test_format_1_manifests_are_compared_as_far_as_they_go(tmp_path):
    def manifest(name: str, recipes: list[dict], files: dict) -> Path:
        path = tmp_path / name / "manifest.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"image": "img", "board": "b", "version": "1", "signature": name * 64,
                                    "recipes": recipes, "files": files}))
        return path

    a = manifest("a", [{"name": "busybox", "version": "1.35.0", "signature": "1",
                        "sources": [{"url": "https://example.org/busybox-1.35.0.tar.bz2", "sha256": "aa"}]},
                       {"name": "old", "version": "1", "signature": "2"}],
                 {"img.img": {"sha256": "x", "size": 100}})
    b = manifest("b", [{"name": "busybox", "version": "1.36.1", "signature": "3",
                        "sources": [{"url": "https://example.org/busybox-1.36.1.tar.bz2", "sha256": "bb"}]}],
                 {"img.img": {"sha256": "y", "size": 120}})
    result = imagediff.diff(a, b.parent)
    [busybox] = result["recipes"]["changed"]
    assert busybox["version"] == ["1.35.0", "1.36.1"] and busybox["inputs"] == ["signature changed"]
    assert busybox["sources"] == {"added": ["https://example.org/busybox-1.36.1.tar.bz2 (sha256 bb)"],
                                  "removed": ["https://example.org/busybox-1.35.0.tar.bz2 (sha256 aa)"], "changed": []}
    assert busybox["output"] == "unknown"
    assert result["recipes"]["removed"] == [{"name": "old", "version": "1"}]
    assert not result["rootfs"]["available"] and not result["kernel_config"]["available"]
    assert result["files"]["changed"] == [{"name": "img.img", "size": [100, 120], "sha256": ["x", "y"]}]
    text = imagediff.render_text(result)
    assert "  ~ busybox 1.35.0 -> 1.36.1: signature changed; output unknown" in text
    assert "  ~ img.img  100 -> 120 (+20)" in text
    assert imagediff.has_changes(result) and not imagediff.has_changes(imagediff.diff(a, a))


@needs_tools
def test_diff_between_two_tiny_builds(tiny, tmp_path):
    project = image_project(tiny)
    env = env_for(tmp_path)
    deploy, _ = build_image(project, tmp_path / "build", env)
    a = tmp_path / "a"
    shutil.copytree(deploy, a)
    # B: hello prints more, the kernel config changes, the image installs one more package
    hello = project / "recipes/hello/files/hello.c"
    hello.write_text(hello.read_text().replace("puts(greeting())", "puts(greeting()); puts(\"and more\")"))
    (project / "recipes/fake-kernel/files/config").write_text(
        CONFIG.replace("# CONFIG_MODULES is not set", "CONFIG_MODULES=y").replace("CONFIG_SQUASHFS_XZ=y\n", "")
        + "CONFIG_NEW=y\n")
    image = project / "recipes/tiny-image.yaml"
    image.write_text(image.read_text().replace("[hello, virtual/kernel]", "[hello, virtual/kernel, noisy]"))
    build_image(project, tmp_path / "build", env)
    b = tmp_path / "b"
    shutil.copytree(deploy, b)

    proc = run_buildsys("diff", a / "manifest.json", b, env=env, check=0)
    text = proc.stdout
    assert "recipes: 1 added, 0 removed, 3 changed" in text
    assert "  + noisy 1" in text
    hello_line = next(line for line in text.splitlines() if line.startswith("  ~ hello 1.0: "))
    assert "value 'sources' changed" in hello_line and hello_line.endswith("output changed")
    assert "      source ~ recipes/hello/files/hello.c: " in text
    assert "  ~ fake-kernel 6.1: value 'sources' changed; output changed" in text
    image_line = next(line for line in text.splitlines() if line.startswith("  ~ tiny-image 1: "))
    assert "value 'packages' changed" in image_line and "new dependency noisy" in image_line
    assert "dependency hello changed" in image_line
    assert "kernel config: 3 symbols changed" in text
    assert "  CONFIG_MODULES: is not set -> y" in text
    assert "  CONFIG_NEW: (absent) -> y" in text and "  CONFIG_SQUASHFS_XZ: y -> (absent)" in text
    assert "  ~ tiny-image.img  " in text and "  ~ tiny-image.squashfs  " in text
    assert "libgreet" not in text and "toolchain-host" not in text

    result = json.loads(run_buildsys("diff", "--json", a, b, env=env, check=0).stdout)
    assert result["a"]["manifest"] == str(a / "manifest.json") and result["b"]["manifest_format"] == 2
    assert [r["name"] for r in result["recipes"]["changed"]] == ["fake-kernel", "hello", "tiny-image"]
    fs = result["rootfs"]
    assert fs["available"]
    changed = {e["path"]: e for e in fs["changed"]}
    assert changed["/usr/bin/hello"]["changed"] == ["content"] and changed["/boot/config"]["delta"] == -19
    assert {"/etc/noise", "/etc/stable"} <= {e["path"] for e in fs["added"]}
    assert fs["removed"] == []

    # without a rootfs list in the manifests: the two deployed squashfs images are listed
    for side in (a, b):
        manifest = json.loads((side / "manifest.json").read_text())
        manifest.pop("rootfs", None)
        (side / "manifest.json").write_text(json.dumps(manifest))
    result = imagediff.diff(a, b)
    assert result["rootfs"]["source"] == "squashfs" and result["rootfs"]["content_compared"]
    changed = {e["path"]: e for e in result["rootfs"]["changed"]}
    assert changed["/usr/bin/hello"]["changed"] == ["content"] and changed["/boot/config"]["changed"] == ["size"]
    assert {"/etc/noise", "/etc/stable"} <= {e["path"] for e in result["rootfs"]["added"]}
    # a squashfs that is not the one its manifest names is not used
    (b / "tiny-image.squashfs").write_bytes(b"other")
    result = imagediff.diff(a, b)
    assert not result["rootfs"]["available"] and "not the file its manifest names" in result["rootfs"]["why"]

    # --exit-code: 1 when they differ, 0 when not
    run_buildsys("diff", "--exit-code", a, b, env=env, check=1)
    run_buildsys("diff", "--exit-code", a, a, env=env, check=0)


def test_diff_bad_input_is_one_line_exit_2(tmp_path):
    proc = run_buildsys("diff", tmp_path / "x", tmp_path, check=2)
    assert proc.stderr == f"{tmp_path / 'x'}: no such deploy dir or manifest (name an image's deploy dir, " \
                          "e.g. build/deploy/<board>, or its manifest.json)\n"
    (tmp_path / "manifest.json").write_text("[]")
    proc = run_buildsys("diff", tmp_path, tmp_path, check=2)
    assert proc.stderr == f"{tmp_path / 'manifest.json'}:1:1: not a buildsys deploy manifest (no image, board, " \
                          "recipes and files)\n"

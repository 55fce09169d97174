"""The SPDX document and the rootfs file list every image deploy writes:
a real build of the tiny fixture with a stand-in image class, the document
checked with spdx-tools' own parser and validator."""
import argparse
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from buildsys import engine, sbom
from buildsys.classes.base import Param
from buildsys.classes.script import Script
from buildsys.workspace import Workspace

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


class SbomImage(Script):
    """A stand-in image class: the rootfs is its packages' trees; it deploys
    what its own install step writes (no kernel, no squashfs)."""

    name = "test-sbom-image"
    installs_packages = True
    params = {"packages": Param("list", [], "recipes the image installs")}


IMAGE = """format: 1
name: tiny-image
version: "2"
license: MIT
class: test-sbom-image
packages: [hello]
steps:
  install: |
    mkdir -p ${destdir}
    echo disk > ${destdir}/tiny-image.img
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def project(tiny: Path) -> Path:
    """The tiny fixture with an image, a runtime dependency, license files, CPE/PURL and a LicenseRef."""
    (tiny / "recipes/tiny-image.yaml").write_text(IMAGE)
    board = tiny / "board-configs/tiny-x86.yaml"
    board.write_text(board.read_text().replace("default_image: hello", "default_image: tiny-image"))
    hello = tiny / "recipes/hello/hello.yaml"
    hello_c = sha256(tiny / "recipes/hello/files/hello.c")
    hello.write_text(hello.read_text().replace(
        "license: MIT\n", f"license: MIT\nlicense_files:\n  - {{path: hello.c, sha256: {hello_c}}}\n"
                          "rdepends: [libgreet]\nhomepage: https://example.org/hello\n"))
    greet = tiny / "recipes/libgreet/libgreet.yaml"
    greet.write_text(greet.read_text().replace(
        "license: MIT\n", "license: MIT AND LicenseRef-Greet-Notice\ncpe: o:example:greet_lib\n"
                          "purl: pkg:github/example/libgreet@${version}\n"))
    return tiny


def workspace(tiny: Path, tmp_path: Path) -> Workspace:
    env = dict(os.environ, BUILDSYS_DL_DIR=str(tmp_path / "dl"), BUILDSYS_CACHE_DIR=str(tmp_path / "cache"),
               BUILDSYS_OFFLINE="1")
    return Workspace(argparse.Namespace(project=str(tiny), build_dir=str(tmp_path / "build"), board=None), env)


def validate(path: Path) -> list:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    return [m.validation_message for m in validate_full_spdx_document(parse_file(str(path)))]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One build of the tiny image (module-wide: CPU is scarce)."""
    from conftest import FIXTURES

    tmp = tmp_path_factory.mktemp("sbom")
    tiny = project(Path(shutil.copytree(FIXTURES / "tiny", tmp / "tiny")))
    result = engine.build(workspace(tiny, tmp), [], engine.BuildOptions(jobs=2))
    assert result.ok, result.failed
    return tiny, tmp, result


@needs_bwrap
def test_deploy_writes_a_valid_spdx_document(built):
    _, tmp, result = built
    out = tmp / "build/deploy/tiny-x86"
    doc_path = out / "tiny-image-tiny-x86.spdx.json"
    assert validate(doc_path) == []
    doc = json.loads(doc_path.read_text())
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["dataLicense"] == "CC0-1.0"
    # deterministic: the image's epoch (the fixture's source_date_epoch) and its signature
    assert doc["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    assert doc["documentNamespace"].endswith("/tiny-image-tiny-x86-" + result.sigs["tiny-image"])

    packages = {p["SPDXID"]: p for p in doc["packages"]}
    image = packages["SPDXRef-Image-tiny-image-tiny-x86"]
    assert image["checksums"] == [{"algorithm": "SHA256", "checksumValue": sha256(out / "tiny-image.img")}]
    assert image["licenseDeclared"] == "MIT"
    hello, greet = packages["SPDXRef-Package-hello"], packages["SPDXRef-Package-libgreet"]
    assert hello["versionInfo"] == "1.0" and hello["licenseConcluded"] == hello["licenseDeclared"] == "MIT"
    assert hello["downloadLocation"] == "NOASSERTION"           # layer files
    assert hello["sourceInfo"] == "layer file recipes/hello/files/hello.c"
    assert hello["homepage"] == "https://example.org/hello"
    refs = {r["referenceType"]: r["referenceLocator"] for r in hello["externalRefs"]}
    assert refs == {"purl": "pkg:generic/hello@1.0", "cpe23Type": "cpe:2.3:a:hello:hello:1.0:*:*:*:*:*:*:*"}
    refs = {r["referenceType"]: r["referenceLocator"] for r in greet["externalRefs"]}
    assert refs == {"purl": "pkg:github/example/libgreet@1.0",
                    "cpe23Type": "cpe:2.3:o:example:greet_lib:1.0:*:*:*:*:*:*:*"}
    # a LicenseRef is defined in the document
    assert greet["licenseDeclared"] == "MIT AND LicenseRef-Greet-Notice"
    assert [i["licenseId"] for i in doc["hasExtractedLicensingInfos"]] == ["LicenseRef-Greet-Notice"]

    # the rootfs files with SHA1 and SHA256, in their package
    tree = Path(result.session.package_dir("hello"))
    binary = tree / "usr/bin/hello"
    files = {f["fileName"]: f for f in doc["files"]}
    entry = files["./usr/bin/hello"]
    assert {c["algorithm"]: c["checksumValue"] for c in entry["checksums"]} == {
        "SHA1": hashlib.sha1(binary.read_bytes()).hexdigest(), "SHA256": sha256(binary)}
    assert hello["filesAnalyzed"] is True
    assert hello["packageVerificationCode"]["packageVerificationCodeValue"] == hashlib.sha1(
        "".join(sorted(c["checksumValue"] for f in doc["files"] if f["SPDXID"].startswith("SPDXRef-File-hello")
                       for c in f["checksums"] if c["algorithm"] == "SHA1")).encode()).hexdigest()

    rels = {(r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"]) for r in doc["relationships"]}
    img = "SPDXRef-Image-tiny-image-tiny-x86"
    assert ("SPDXRef-DOCUMENT", "DESCRIBES", img) in rels
    for pkg in ("SPDXRef-Package-hello", "SPDXRef-Package-libgreet"):    # libgreet: hello's rdepends
        assert (img, "CONTAINS", pkg) in rels and (img, "GENERATED_FROM", pkg) in rels
    assert ("SPDXRef-Package-hello", "CONTAINS", entry["SPDXID"]) in rels
    assert ("SPDXRef-Package-libgreet", "RUNTIME_DEPENDENCY_OF", "SPDXRef-Package-hello") in rels
    assert ("SPDXRef-Package-libgreet", "BUILD_DEPENDENCY_OF", "SPDXRef-Package-hello") in rels
    # the toolchain builds the packages, it is not in the image
    assert ("SPDXRef-Package-toolchain-host", "BUILD_DEPENDENCY_OF", "SPDXRef-Package-hello") in rels
    assert not any(r[2] == "SPDXRef-Package-toolchain-host" and r[1] == "CONTAINS" for r in rels)


@needs_bwrap
def test_manifest_lists_the_rootfs_and_the_document(built):
    _, tmp, result = built
    out = tmp / "build/deploy/tiny-x86"
    manifest = json.loads((out / "manifest.json").read_text())
    rootfs = {f["path"]: f for f in manifest["rootfs"]}
    binary = Path(result.session.package_dir("hello")) / "usr/bin/hello"
    assert rootfs["/usr/bin/hello"] == {"path": "/usr/bin/hello", "type": "file", "size": binary.stat().st_size,
                                        "sha256": sha256(binary), "package": "hello"}
    assert rootfs["/usr/lib/libgreet.a"]["package"] == "libgreet"
    assert [f["path"] for f in manifest["rootfs"]] == sorted(rootfs)
    name = "tiny-image-tiny-x86.spdx.json"
    assert manifest["files"][name] == {"sha256": sha256(out / name), "size": (out / name).stat().st_size}


@needs_bwrap
def test_the_same_build_gives_the_same_bytes(built):
    tiny, tmp, _ = built
    out = tmp / "build/deploy/tiny-x86"
    first = (out / "tiny-image-tiny-x86.spdx.json").read_bytes()
    shutil.rmtree(out)
    again = engine.build(workspace(tiny, tmp), [], engine.BuildOptions())
    assert again.ok and again.ran == []          # deployed again from the packages, nothing rebuilt
    assert (out / "tiny-image-tiny-x86.spdx.json").read_bytes() == first


@needs_bwrap
def test_links_in_a_package_are_recorded_never_followed(built, tmp_path):
    _, _, result = built
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin/tool").write_bytes(b"\x7fELF tool")
    os.symlink("/etc/passwd", tree / "bin/planted")          # a step's absolute link
    os.symlink("tool", tree / "bin/sh")
    files = sbom.tree_files("pkg", tree)
    assert [(f.path, f.kind, f.target) for f in files] == [
        ("/bin/planted", "symlink", "/etc/passwd"), ("/bin/sh", "symlink", "tool"), ("/bin/tool", "file", "")]
    planted = files[0]
    assert planted.size == len("/etc/passwd") and planted.sha256 == hashlib.sha256(b"/etc/passwd").hexdigest()


# --- identifiers, on recipes resolved from YAML ----------------------------------------------
def resolved(tiny: Path, tmp_path: Path, name: str, text: str):
    (tiny / f"recipes/{name}.yaml").write_text(text)
    return workspace(tiny, tmp_path).resolver.recipe(name)


def test_purl_and_cpe_defaults_overrides_and_escaping(tiny, tmp_path):
    r = resolved(tiny, tmp_path, "odd", "format: 1\nname: odd\nversion: 1.0+git:2\nlicense: MIT\n")
    assert sbom.purl(r) == "pkg:generic/odd@1.0+git%3A2"
    assert sbom.cpe(r) == "cpe:2.3:a:odd:odd:1.0\\+git\\:2:*:*:*:*:*:*:*"
    r = resolved(tiny, tmp_path, "kern", "format: 1\nname: kern\nversion: '6.1'\ncpe: o:linux:linux_kernel\n"
                                         "purl: pkg:generic/linux@${version}\n")
    assert sbom.cpe(r) == "cpe:2.3:o:linux:linux_kernel:6.1:*:*:*:*:*:*:*"
    assert sbom.purl(r) == "pkg:generic/linux@6.1"


def test_download_locations(tiny, tmp_path):
    sha = "ab" * 32
    rev = "0123456789abcdef0123456789abcdef01234567"
    r = resolved(tiny, tmp_path, "up", f"format: 1\nname: up\nversion: '1'\nsources:\n"
                                       f"  - {{url: 'https://example.org/up-1.tar.gz', sha256: {sha}}}\n")
    assert sbom.download_location(r) == "https://example.org/up-1.tar.gz"
    assert sbom.source_info(r) == f"https://example.org/up-1.tar.gz sha256 {sha}"
    r = resolved(tiny, tmp_path, "gitty", f"format: 1\nname: gitty\nversion: '1'\nsources:\n"
                                          f"  - {{git: 'https://example.org/g.git', rev: {rev}}}\n")
    assert sbom.download_location(r) == f"git+https://example.org/g.git@{rev}"
    # a Debian archive path names no host: no assertion (the path is in sourceInfo)
    r = resolved(tiny, tmp_path, "deb", f"format: 1\nname: deb\nversion: '1'\nsources:\n"
                                        f"  - {{url: 'debian:deb/deb_1.orig.tar.xz', sha256: {sha}}}\n")
    assert sbom.download_location(r) == "NOASSERTION"
    assert "debian:deb/deb_1.orig.tar.xz" in sbom.source_info(r)


@pytest.mark.parametrize("line, message", [
    ("cpe: busybox", "'busybox' is not vendor:product"),
    ("cpe: 'x:y:z'", "'x:y:z' is not vendor:product"),        # part must be a, o or h
    ("purl: busybox@1", "'busybox@1' is not a package URL"),
    ("license_files: [{path: ../COPYING, sha256: " + "a" * 64 + "}]",
     "'../COPYING' is not a relative path inside the source tree"),
    ("license_files: [{path: COPYING}]", "missing required key 'sha256' in license file"),
    ("license_files: [{path: COPYING, sha256: abc}]", "sha256 'abc' is not 64 hex digits"),
])
def test_bad_sbom_and_license_keys_are_positioned_load_errors(tiny, tmp_path, line, message):
    from buildsys.errors import UserError

    with pytest.raises(UserError) as err:
        resolved(tiny, tmp_path, "bad", f"format: 1\nname: bad\nversion: '1'\n{line}\n")
    assert message in str(err.value)
    assert str(err.value).startswith(str(tiny / "recipes/bad.yaml") + ":4:")


# --- the real image -------------------------------------------------------------------------
@pytest.mark.slow
def test_x86_virtio_sbom_size_legal_info_and_budget(tmp_path):
    """One x86-virtio build (from CI's artifact cache when it has it): its SPDX
    document validates, `size` and `legal-info` report on it, and a size_budget
    it does not fit in fails the image with its largest contributors."""
    from conftest import ROOT, run_buildsys

    dl = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "build"), "BUILDSYS_DL_DIR": dl,
           "BUILDSYS_CACHE_DIR": os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(tmp_path / "cache")}
    run_buildsys("--project", ROOT, "build", env=env, check=0)
    out = tmp_path / "build/deploy/x86-virtio"
    doc_path = out / "image-minimal-x86-virtio.spdx.json"
    assert validate(doc_path) == []
    doc = json.loads(doc_path.read_text())
    packages = {p["name"]: p for p in doc["packages"]}
    assert {"busybox", "base-files", "linux", "squashfs-tools", "mtools", "xz"} <= set(packages)
    busybox = packages["busybox"]
    assert busybox["downloadLocation"] == "https://busybox.net/downloads/busybox-1.35.0.tar.bz2"
    assert {"algorithm": "SHA256", "checksumValue":
            "faeeb244c35a348a334f4a59e44626ee870fb07b6884d68c10ae8bc19f83a694"} in busybox["checksums"]
    assert {r["referenceLocator"] for r in packages["linux"]["externalRefs"]} == {
        "pkg:generic/linux@6.1.176", "cpe:2.3:o:linux:linux_kernel:6.1.176:*:*:*:*:*:*:*"}
    files = {f["fileName"]: f for f in doc["files"]}
    kernel = {c["algorithm"]: c["checksumValue"] for c in files["./EFI/BOOT/BOOTX64.EFI"]["checksums"]}
    assert kernel["SHA256"] == sha256(out / "bzImage")
    rels = {(r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"]) for r in doc["relationships"]}
    assert ("SPDXRef-Package-squashfs-tools-native", "BUILD_TOOL_OF", "SPDXRef-Image-image-minimal-x86-virtio") in rels
    manifest = json.loads((out / "manifest.json").read_text())
    assert {f["path"]: f["package"] for f in manifest["rootfs"]}["/bin/busybox"] == "busybox"

    report = run_buildsys("--project", ROOT, "size", "--svg", tmp_path / "size.svg", env=env, check=0).stdout
    assert "kernel            linux boot/bzImage" in report and "busybox" in report
    legal = run_buildsys("--project", ROOT, "legal-info", "--offline", env=env, check=0)
    assert "sources of busybox-1.35.0, linux-6.1.176" in legal.stderr
    info = tmp_path / "build/legal-info/x86-virtio"
    assert (info / "sources/linux-6.1.176/linux_6.1.176.orig.tar.xz").is_file()
    assert (info / "licenses/busybox-1.35.0/LICENSE").is_file()

    # a budget the image does not fit in: only the image is rebuilt, and fails naming the kernel
    layer = tmp_path / "budget-layer"
    (layer / "recipes").mkdir(parents=True)
    (layer / "layer.yaml").write_text("format: 1\nname: budget\npriority: 20\n")
    (layer / "recipes/image-minimal.append.yaml").write_text("format: 1\nsize_budget: 1M\n")
    failed = run_buildsys("--project", ROOT, "build", env=dict(env, BUILDSYS_LAYERS=str(layer)), check=1)
    assert "image-minimal-x86-virtio.img is" in failed.stderr and "over its size_budget of 1.00 MiB" in failed.stderr
    assert "esp:/EFI/BOOT/BOOTX64.EFI (linux boot/bzImage)" in failed.stderr

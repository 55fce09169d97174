"""apply_patches: -p1, in order; a failing hunk is reported precisely."""
import difflib
import re

import pytest

from buildsys.errors import UnpackError
from buildsys.fetch import apply_patches

ORIGINAL = [f"line {i}\n" for i in range(1, 21)]


def diff(old: list[str], new: list[str], name: str = "hello.c") -> str:
    return "".join(difflib.unified_diff(old, new, f"a/{name}", f"b/{name}"))


@pytest.fixture
def src_dir(tmp_path):
    path = tmp_path / "src"
    path.mkdir()
    (path / "hello.c").write_text("".join(ORIGINAL))
    return path


def write_patch(tmp_path, name, text):
    path = tmp_path / "patches" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_patches_apply_in_order(src_dir, tmp_path):
    step1 = ORIGINAL[:1] + ["line 2 patched\n"] + ORIGINAL[2:]
    step2 = step1[:1] + ["line 2 patched twice\n"] + step1[2:]
    first = write_patch(tmp_path, "0001-first.patch", diff(ORIGINAL, step1))
    second = write_patch(tmp_path, "0002-second.patch", diff(step1, step2))
    apply_patches([first, second], src_dir)
    assert (src_dir / "hello.c").read_text() == "".join(step2)


def test_patch_order_matters(src_dir, tmp_path):
    step1 = ORIGINAL[:1] + ["line 2 patched\n"] + ORIGINAL[2:]
    step2 = step1[:1] + ["line 2 patched twice\n"] + step1[2:]
    first = write_patch(tmp_path, "0001-first.patch", diff(ORIGINAL, step1))
    second = write_patch(tmp_path, "0002-second.patch", diff(step1, step2))
    with pytest.raises(UnpackError) as info:
        apply_patches([second, first], src_dir)
    assert "0002-second.patch" in str(info.value)


def test_patch_creating_a_new_file(src_dir, tmp_path):
    text = diff([], ["new\n"], "sub/new.c").replace("--- a/sub/new.c", "--- /dev/null")
    apply_patches([write_patch(tmp_path, "0001-new.patch", text)], src_dir)
    assert (src_dir / "sub" / "new.c").read_text() == "new\n"


def test_failing_hunk_is_named(src_dir, tmp_path):
    """Hunk 1 applies, hunk 2 removes a line that is not there."""
    claimed = list(ORIGINAL)
    claimed[16] = "line 17 as the patch author had it\n"
    wanted = list(claimed)
    wanted[1] = "line 2 changed\n"
    wanted[16] = "line 17 changed\n"
    text = diff(claimed, wanted)
    assert text.count("@@ -") == 2
    bad = write_patch(tmp_path, "0003-broken.patch", text)
    with pytest.raises(UnpackError) as info:
        apply_patches([bad], src_dir)
    message = str(info.value)
    assert "0003-broken.patch" in message
    assert "hello.c" in message
    assert re.search(r"hunk\s*#?\s*2\b", message, re.IGNORECASE), message


def test_patch_cannot_write_outside_the_tree(src_dir, tmp_path):
    text = diff([], ["owned\n"], "../outside.txt").replace("--- a/../outside.txt", "--- /dev/null")
    bad = write_patch(tmp_path, "0004-escape.patch", text)
    with pytest.raises(UnpackError) as info:
        apply_patches([bad], src_dir)
    assert "0004-escape.patch" in str(info.value)
    assert not (tmp_path / "outside.txt").exists()

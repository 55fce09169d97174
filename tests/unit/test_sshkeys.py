"""The developer's SSH keys (sshkeys.py): every line checked as OpenSSH reads
it, a bad one is one positioned line and exit 2, and the keys reach the
recipe that installs them -- and its signature."""
import argparse
import shutil

import pytest

from buildsys import sshkeys
from buildsys.errors import UserError
from buildsys.plan import Plan
from buildsys.workspace import Workspace
from conftest import FIXTURES, run_buildsys, write_tree

# Public keys (made for this test; no secret).
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPkAYeVA/Fb39o2Ow1T+xQFhS7pq6id8BGkAE46+zjlm dev@example"
ED25519_DATA = ED25519.split()[1]


def test_a_real_key_passes_and_is_stripped():
    assert sshkeys.check_key(f"  {ED25519}\n") == ED25519
    assert sshkeys.check_key(" ".join(ED25519.split()[:2])) == " ".join(ED25519.split()[:2])  # no comment


@pytest.mark.parametrize("line, reason", [
    ("", "empty key"),
    ("ssh-ed25519", "no key data after 'ssh-ed25519'"),
    ("ssh-dss AAAAB3NzaC1kc3M= x", "unknown key type 'ssh-dss'"),
    (f"ssh-ed25519 {ED25519_DATA[:-7]} x", "not base64"),              # cut short
    (f"ssh-rsa {ED25519_DATA} x", "is not a ssh-rsa key"),               # type and data disagree
    (f'from="10.0.0.1" {ED25519}', "options before the key type are not supported"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----", "private key"),
    (f"{ED25519}\n{ED25519}", "several lines"),
])
def test_bad_keys_say_why(line, reason):
    with pytest.raises(ValueError, match=reason):
        sshkeys.check_key(line)


@pytest.fixture
def project(tmp_path):
    """The tiny fixture project plus a recipe installing the keys."""
    dest = tmp_path / "p"
    shutil.copytree(FIXTURES / "tiny", dest)
    write_tree(dest, {"recipes/keys/keys.yaml": "format: 1\nname: keys\nversion: '1'\nclass: authorized-keys\n"
                                                "authorized_keys: ${ssh_authorized_keys}\n"})
    return dest


def _keys_and_sig(project, tmp_path):
    ws = Workspace(argparse.Namespace(project=str(project), build_dir=str(tmp_path / "build"), board=None))
    recipe = ws.resolver.recipe("keys")
    return recipe.get("authorized_keys"), Plan(ws.resolver, ws.board, [recipe]).sigs["keys"]


def test_keys_from_local_yaml_and_env_reach_the_recipe_and_its_signature(project, tmp_path, monkeypatch):
    monkeypatch.delenv(sshkeys.ENV_VAR, raising=False)
    none, sig_none = _keys_and_sig(project, tmp_path)
    assert none == ""
    (project / "local.yaml").write_text(f"format: 1\nssh_authorized_keys:\n  - {ED25519}\n")
    one, sig_one = _keys_and_sig(project, tmp_path)
    assert one == ED25519 and sig_one != sig_none
    pub = tmp_path / "id.pub"
    rsa = ("ssh-rsa "
           "AAAAB3NzaC1yc2EAAAADAQABAAAAgQDahM0qgqZ5OwlU78mIu4LIT5IEYvnCKoxhvmOYt2tgL1HFiCfuT7bU4jC9nLS2hB8JLieG"
           "nB8CrNX6wyU9K1qONS3+dc7zLIIVfIBhutdqpedn1aMtA5lEFommh0d2wICcJrcN6jIBebP2o/5AK5oO8NSbK2VGCujqMXtmSrCV"
           "Jw==")
    pub.write_text(f"# my keys\n\n{rsa}\n{ED25519}\n")        # comments and blanks skipped, duplicates dropped
    monkeypatch.setenv(sshkeys.ENV_VAR, str(pub))
    both, sig_both = _keys_and_sig(project, tmp_path)
    assert both == f"{ED25519}\n{sshkeys.check_key(rsa)}" and sig_both not in (sig_one, sig_none)


def test_a_bad_key_in_local_yaml_is_one_line_at_its_position(project):
    (project / "local.yaml").write_text(f"format: 1\nssh_authorized_keys:\n  - {ED25519}\n  - ssh-ed25519 AAAA\n")
    proc = run_buildsys("--project", project, "show", "keys", check=2, env={sshkeys.ENV_VAR: ""})
    line = proc.stderr.strip()
    assert "\n" not in line and f"{project / 'local.yaml'}:4:5: ssh_authorized_keys: not an SSH public key" in line


def test_a_bad_key_file_is_one_line_at_its_line(project, tmp_path):
    pub = tmp_path / "bad.pub"
    pub.write_text(f"{ED25519}\nssh-ed25519 AAAA\n")
    proc = run_buildsys("--project", project, "show", "keys", check=2, env={sshkeys.ENV_VAR: str(pub)})
    assert proc.stderr.strip().startswith(f"{pub}:2:1: not an SSH public key")
    with pytest.raises(UserError, match="cannot read"):
        sshkeys.project_keys({}, {sshkeys.ENV_VAR: str(tmp_path / "missing.pub")})

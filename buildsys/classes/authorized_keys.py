"""``class: authorized-keys`` -- the developer's SSH public keys as
/root/.ssh/authorized_keys (or another home's).

The keys are the recipe's ``authorized_keys`` value, normally
``${ssh_authorized_keys}`` (the project setting and BUILDSYS_SSH_AUTHORIZED_KEYS,
see sshkeys.py): they are recipe values, so they are in the signature.  The
file is written host-side without following links (nothing runs in the
sandbox).  With no key the file holds only a comment saying how to add one,
and planning the recipe warns once that nobody will be able to log in.
"""
from __future__ import annotations

import sys

from ..fileio import write_beneath
from .base import BuildClass, Str

_warned = False

NO_KEY = ("# No key: set ssh_authorized_keys in the project's local.yaml, or\n"
          "# BUILDSYS_SSH_AUTHORIZED_KEYS to a .pub file, and rebuild.\n")


class AuthorizedKeys(BuildClass):
    name = "authorized-keys"
    implicit_depends = ()
    params = {
        "authorized_keys": Str("", "the keys, one per line (normally ${ssh_authorized_keys})"),
        "home": Str("/root", "the home directory whose .ssh/authorized_keys is written"),
    }

    def signature_extra(self, recipe, board, env=None):
        global _warned
        if not str(recipe.get("authorized_keys") or "").strip() and not _warned:
            _warned = True
            print(f"warning: {recipe.name}: no SSH public key (ssh_authorized_keys in local.yaml, or "
                  "BUILDSYS_SSH_AUTHORIZED_KEYS): SSH login to the image will be impossible", file=sys.stderr)
        return {}

    def run(self, task, ctx):
        if task != "install":
            return
        keys = [line.strip() for line in str(ctx.recipe.get("authorized_keys") or "").splitlines() if line.strip()]
        text = "".join(f"{k}\n" for k in keys) if keys else NO_KEY
        home = str(ctx.recipe.get("home") or "/root").strip("/")
        write_beneath(ctx.paths.dest, f"{home}/.ssh/authorized_keys", text, mode=0o600)

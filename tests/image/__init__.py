"""Tests of the image pieces: buildsys.image, rootfs, qemu, the kernel and image classes."""

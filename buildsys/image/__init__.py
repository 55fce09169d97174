"""Disk image pieces: partition tables (gpt, mbr), filesystems (squashfs, vfat)
and the assembly of a whole disk (disk).  The filesystem modules return argv
lists, so the engine runs the tools inside its sandbox (built as native
recipes) and tests run the host's."""

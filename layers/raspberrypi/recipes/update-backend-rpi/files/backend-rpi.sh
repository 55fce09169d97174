# /usr/lib/update/backend-rpi.sh -- the A/B updater's Raspberry Pi backend,
# sourced by /usr/sbin/update after /usr/share/update/layout (busybox sh; the
# function interface is described at the top of /usr/sbin/update).
#
# The firmware picks the slot, from autoboot.txt on GPT partition 1
# ("autoboot", FAT, nothing else on it):
#     [all]
#     tryboot_a_b=1
#     boot_partition=<the committed slot's boot partition>
#     [tryboot]
#     boot_partition=<the other one>
# Slot a = partition 2 (boot_a, whose cmdline.txt names root_a), slot b =
# partition 3 (boot_b, root_b).  A restart with reboot(2) "0 tryboot"
# (reboot-tryboot) boots the [tryboot] partition once: the firmware clears
# its flag before it boots, so a panic (panic=5), a watchdog reset, a failed
# health check's `reboot -f` or a power cut go back to the committed slot.
# Committing rewrites autoboot.txt: a new file, sync, then a rename over the
# old one, so a power cut leaves the old or the new file, never half of one.
#
# The firmware says what it booted in the device tree, as big-endian u32s:
# /chosen/bootloader/partition and /chosen/bootloader/tryboot.
#
# Unlike UEFI's BootNext, the trial is not armed on disk: only the restart
# itself (reboot-tryboot, or `update install --reboot`) carries the flag; a
# plain `reboot` boots the committed slot again.
# `update install` says this is what tries the new slot.
BACKEND_TRY_CMD="reboot-tryboot (or update install --reboot)"
RPI_DT=${UPDATE_RPI_DT:-$R/proc/device-tree}/chosen/bootloader
RPI_AUTOBOOT_PARTNAME=autoboot
RPI_MOUNT_DIR=$R/run/update/autoboot
RPI_REBOOT_TRYBOOT=${UPDATE_REBOOT_TRYBOOT:-/usr/sbin/reboot-tryboot}
# A directory holding autoboot.txt that needs no mount (tests; a fake tree is
# never mounted).  Empty: mount the autoboot partition while it is used.
RPI_AUTOBOOT_DIR=${UPDATE_RPI_AUTOBOOT_DIR:-}

rpi_partition_of_slot() {
	case $1 in a) echo 2 ;; b) echo 3 ;; *) update_err "no slot '$1' (a or b)"; return 1 ;; esac
}

rpi_slot_of_partition() {
	case $1 in 2) echo a ;; 3) echo b ;; *) return 1 ;; esac
}

# A u32 property of /chosen/bootloader, in decimal.
rpi_dt_u32() {
	[ -r "$RPI_DT/$1" ] || return 1
	# shellcheck disable=SC2046  # four numbers, split on purpose
	set -- $(hexdump -v -n 4 -e '4/1 "%u "' "$RPI_DT/$1")
	[ $# -eq 4 ] || return 1
	echo $(( ($1 << 24) | ($2 << 16) | ($3 << 8) | $4 ))
}

backend_booted_slot() {
	_p=$(rpi_dt_u32 partition) || {
		update_err "no $RPI_DT/partition: the firmware is too old for autoboot.txt (Pi 4 EEPROM >= 2022-10-18)"
		return 1
	}
	rpi_slot_of_partition "$_p" || { update_err "booted from partition $_p, which is no slot (2 or 3)"; return 1; }
}

backend_is_trial() {
	_t=$(rpi_dt_u32 tryboot) || return 1
	[ "$_t" -eq 1 ]
}

# Run "$@" with $RPI_DIR = the directory of autoboot.txt, the partition
# mounted for the time of the command (read-only unless RPI_RW=1).
rpi_with_autoboot() {
	if [ -n "$RPI_AUTOBOOT_DIR" ]; then
		RPI_DIR=$RPI_AUTOBOOT_DIR "$@"
		return
	fi
	_dev=$(part_dev "$RPI_AUTOBOOT_PARTNAME") || return 1
	mkdir -p "$RPI_MOUNT_DIR" || return 1
	_opt=ro
	[ "${RPI_RW:-0}" = 1 ] && _opt=rw
	mount -t vfat -o "$_opt" "$_dev" "$RPI_MOUNT_DIR" || { update_err "cannot mount $_dev (autoboot.txt)"; return 1; }
	RPI_DIR=$RPI_MOUNT_DIR "$@"
	_rc=$?
	umount "$RPI_MOUNT_DIR" || { update_err "cannot unmount $RPI_MOUNT_DIR"; _rc=1; }
	return $_rc
}

# The slot of boot_partition= in autoboot.txt's [all] section.
rpi_read_committed() {
	[ -r "$RPI_DIR/autoboot.txt" ] || { update_err "no autoboot.txt on the autoboot partition"; return 1; }
	_p=$(tr -d '\r' < "$RPI_DIR/autoboot.txt" |
		sed -n '/^\[all\]/,/^\[/{/^boot_partition=/{s/^boot_partition=//p;q;}}')
	rpi_slot_of_partition "$_p" || { update_err "autoboot.txt: [all] boot_partition='$_p', not 2 or 3"; return 1; }
}

backend_committed_slot() {
	rpi_with_autoboot rpi_read_committed
}

rpi_write_autoboot() {
	printf '[all]\ntryboot_a_b=1\nboot_partition=%s\n[tryboot]\nboot_partition=%s\n' \
		"$(rpi_partition_of_slot "$1")" "$(rpi_partition_of_slot "$(other_slot "$1")")" \
		> "$RPI_DIR/autoboot.tmp" &&
		sync && mv -f "$RPI_DIR/autoboot.tmp" "$RPI_DIR/autoboot.txt" && sync
}

backend_commit() {
	rpi_partition_of_slot "$1" >/dev/null || return 1
	[ "$(backend_committed_slot)" = "$1" ] && return 0
	RPI_RW=1 rpi_with_autoboot rpi_write_autoboot "$1"
}

# The [tryboot] partition is always the slot that is not committed: arming
# checks that $1 is that slot and notes it for `update status` (in /run: the
# note goes with the restart, as the firmware's flag does).
backend_arm_trial() {
	_c=$(backend_committed_slot) || return 1
	if [ "$_c" = "$1" ]; then
		update_err "slot $1 is the committed one: there is nothing to try"
		return 1
	fi
	mkdir -p "$R/run/update" && echo "$1" > "$R/run/update/rpi-armed"
}

backend_armed_slot() {
	[ -r "$R/run/update/rpi-armed" ] && cat "$R/run/update/rpi-armed"
}

backend_reboot_trial() {
	sync
	"$RPI_REBOOT_TRYBOOT"
}

# /usr/lib/update/backend-efi.sh -- the A/B updater's UEFI backend, sourced
# by /usr/sbin/update after /usr/share/update/layout (busybox sh; the
# function interface is described at the top of /usr/sbin/update).
#
# Each slot has a firmware boot entry, Boot$BOOT_A and Boot$BOOT_B (its ESP's
# \EFI\BOOT\BOOTX64.EFI); the image class wrote their exact variable contents
# to /usr/share/update/boot-a.var and boot-b.var.  The committed slot is the
# first of the two in BootOrder.  A trial sets BootNext, which the firmware
# boots once and deletes, so any later reset (panic=5, the watchdog, a failed
# health check, a power cut) boots BootOrder again; committing rewrites
# BootOrder with the trial slot first.
#
# Variables are files of efivarfs: 4 attribute bytes (07 00 00 00:
# non-volatile, boot and runtime access) then the value; each is written with
# one write(2) (a write of the attributes alone would delete it).  efivarfs
# files cannot seek, so they are read from the start.
EFI_GUID=8be4df61-93ca-11d2-aa0d-00e098032b8c
EFI_VARS=${UPDATE_EFIVARS:-$R/sys/firmware/efi/efivars}

efi_mount() {
	# Only the real efivarfs is ever mounted (a test's fake tree never is).
	if [ "$EFI_VARS" = /sys/firmware/efi/efivars ] && ! mountpoint -q "$EFI_VARS"; then
		mount -t efivarfs efivarfs "$EFI_VARS" || { update_err "cannot mount efivarfs"; return 1; }
	fi
	return 0
}

# The u16 values of variable $1 (Boot entry numbers), one per line, as 4 hex digits.
efi_read_u16() {
	[ -r "$EFI_VARS/$1-$EFI_GUID" ] || return 0
	hexdump -v -e '1/2 "%04X\n"' < "$EFI_VARS/$1-$EFI_GUID" | sed 1,2d
}

# Write variable $1 = the u16 list $2... (4 hex digits each), in one write.
efi_write_u16() {
	_name=$1
	shift
	_fmt='\007\000\000\000'
	for _n in "$@"; do
		_v=$((0x$_n))
		_fmt=$_fmt$(printf '\\%03o\\%03o' $((_v & 255)) $((_v >> 8)))
	done
	# shellcheck disable=SC2059  # the format is the value, built above
	printf "$_fmt" > "$EFI_VARS/$_name-$EFI_GUID"
}

efi_entry() {
	case $1 in a) echo "$BOOT_A" ;; b) echo "$BOOT_B" ;; *) return 1 ;; esac
}

efi_slot_of() {
	case $1 in "$BOOT_A") echo a ;; "$BOOT_B") echo b ;; *) return 1 ;; esac
}

# BootOrder with slot $1's entry first, the other slot's second, then the
# firmware's own entries in their order.
efi_order_with_first() {
	_first=$(efi_entry "$1") _second=$(efi_entry "$(other_slot "$1")")
	_rest=$(efi_read_u16 BootOrder | grep -v -x -e "$_first" -e "$_second")
	# shellcheck disable=SC2086  # one entry per word
	efi_write_u16 BootOrder "$_first" "$_second" $_rest
}

backend_booted_slot() {
	_s=$(cmdline_slot)
	if [ -z "$_s" ]; then
		efi_mount || return 1
		_s=$(efi_slot_of "$(efi_read_u16 BootCurrent)") || {
			update_err "no buildsys.slot= on the kernel command line and BootCurrent is no slot's entry"
			return 1
		}
	fi
	echo "$_s"
}

backend_committed_slot() {
	efi_mount || return 1
	for _n in $(efi_read_u16 BootOrder); do
		if efi_slot_of "$_n"; then
			return 0
		fi
	done
	update_err "neither Boot$BOOT_A nor Boot$BOOT_B is in BootOrder"
	return 1
}

backend_is_trial() {
	_b=$(backend_booted_slot) || return 1
	_c=$(backend_committed_slot 2>/dev/null) || return 1
	[ "$_b" != "$_c" ]
}

backend_armed_slot() {
	efi_mount || return 1
	_n=$(efi_read_u16 BootNext)
	[ -n "$_n" ] && efi_slot_of "$_n"
}

backend_arm_trial() {
	efi_mount || return 1
	for _s in a b; do      # the entries must be there (and right) for BootNext to work
		efi_ensure_entry "$_s" || return 1
	done
	efi_write_u16 BootNext "$(efi_entry "$1")"
}

backend_reboot_trial() {
	sync
	$REBOOT
}

backend_commit() {
	efi_mount || return 1
	efi_order_with_first "$1"
}

# Boot entry of slot $1 = /usr/share/update/boot-<slot>.var, written if it differs.
efi_ensure_entry() {
	_var=$EFI_VARS/Boot$(efi_entry "$1")-$EFI_GUID
	_want=$SHARE/boot-$1.var
	[ -r "$_want" ] || { update_err "no $_want"; return 1; }
	if ! cmp -s "$_want" "$_var" 2>/dev/null; then
		# Under 4 KiB: dd reads it whole and writes it in one write(2).
		dd if="$_want" of="$_var" bs=4096 count=1 2>/dev/null || {
			update_err "cannot write Boot$(efi_entry "$1")"
			return 1
		}
	fi
}

# First boot (or entries lost, e.g. a fresh VARS file): the slots' boot
# entries, and BootOrder with the running slot first.
backend_init() {
	efi_mount || return 1
	for _s in a b; do
		efi_ensure_entry "$_s" || return 1
	done
	if ! backend_committed_slot >/dev/null 2>&1; then
		_b=$(backend_booted_slot) || return 1
		efi_order_with_first "$_b" || return 1
		echo "update: boot entries Boot$BOOT_A (slot a) and Boot$BOOT_B (slot b) created, slot $_b committed"
	fi
}

# /usr/lib/update/backend-jetson.sh -- the A/B updater's Jetson backend,
# sourced by /usr/sbin/update after /usr/share/update/layout (busybox sh; the
# function interface is described at the top of /usr/sbin/update).
#
# Jetson Orin's UEFI keeps rootfs slots itself (flashed with ROOTFS_AB=1):
# slot 0 = APP (our a), slot 1 = APP_b (our b).  NVIDIA's nvbootctrl talks to
# it:  nvbootctrl -t rootfs get-current-slot | set-active-boot-slot N |
# mark-boot-successful | dump-slot-info.  A slot made active is booted until
# it is marked successful or its retry count runs out (UEFI then goes back
# to the other slot): a trial gets the firmware's retry count of tries, not
# exactly one.
#
# nvbootctrl is NVIDIA's binary (the BSP's nvidia-l4t-tools), not built
# here: the board layer or the product must install it (README.md).
#
# The committed slot is ours to remember (the firmware's "active" slot is
# also the armed one): COMMITTED= in $DATA/backend-jetson, written by commit
# (new file, then rename).  Every committed boot must be marked successful,
# or the firmware would count it down and switch slots: backend_init does it.
NVBOOTCTRL=${UPDATE_NVBOOTCTRL:-nvbootctrl}
JETSON_STATE=$DATA/backend-jetson

jetson_ctl() {
	if ! have "$NVBOOTCTRL"; then
		update_err "no $NVBOOTCTRL (NVIDIA's, from the Jetson Linux BSP): the board layer must install it"
		return 1
	fi
	"$NVBOOTCTRL" -t rootfs "$@"
}

jetson_slot_of() {
	case $1 in 0 | A) echo a ;; 1 | B) echo b ;; *) return 1 ;; esac
}

jetson_number_of() {
	case $1 in a) echo 0 ;; b) echo 1 ;; *) update_err "no slot '$1' (a or b)"; return 1 ;; esac
}

backend_booted_slot() {
	_n=$(jetson_ctl get-current-slot) || { update_err "nvbootctrl get-current-slot failed"; return 1; }
	jetson_slot_of "$_n" || { update_err "nvbootctrl says the current rootfs slot is '$_n'"; return 1; }
}

# Fails before the first commit (first boot): the updater then takes the
# booted slot.
backend_committed_slot() {
	[ -r "$JETSON_STATE" ] || return 1
	_c=$(sed -n 's/^COMMITTED=//p' "$JETSON_STATE")
	case $_c in a | b) echo "$_c" ;; *) update_err "$JETSON_STATE: no COMMITTED=a|b"; return 1 ;; esac
}

backend_is_trial() {
	_c=$(backend_committed_slot 2>/dev/null) || return 1
	_b=$(backend_booted_slot) || return 1
	[ "$_b" != "$_c" ]
}

# The slot the firmware will boot next when it is not the running one.
backend_armed_slot() {
	_a=$(jetson_ctl dump-slot-info 2>/dev/null | sed -n 's/^Active rootfs slot: *\([AB01]\).*/\1/p')
	_a=$(jetson_slot_of "$_a") || return 1
	[ "$_a" != "$(backend_booted_slot)" ] && echo "$_a"
}

jetson_write_state() {
	mkdir -p "$DATA" && echo "COMMITTED=$1" > "$JETSON_STATE.tmp" && sync &&
		mv -f "$JETSON_STATE.tmp" "$JETSON_STATE" && sync
}

# At every boot: the first one records the booted slot as committed; a
# committed slot's boot is marked successful (its retry count reset).  A
# trial boot is left for the health checks (update commit).
backend_init() {
	_b=$(backend_booted_slot) || return 1
	if ! _c=$(backend_committed_slot 2>/dev/null); then
		jetson_write_state "$_b" || return 1
		_c=$_b
	fi
	if [ "$_b" = "$_c" ]; then
		jetson_ctl mark-boot-successful || { update_err "nvbootctrl mark-boot-successful failed"; return 1; }
	fi
}

backend_arm_trial() {
	_n=$(jetson_number_of "$1") || return 1
	jetson_ctl set-active-boot-slot "$_n" || { update_err "nvbootctrl set-active-boot-slot $_n failed"; return 1; }
}

# The firmware boots the active slot: an ordinary restart tries it.
backend_reboot_trial() {
	sync
	$REBOOT
}

backend_commit() {
	_n=$(jetson_number_of "$1") || return 1
	if [ "$(backend_booted_slot)" = "$1" ]; then
		jetson_ctl mark-boot-successful || { update_err "nvbootctrl mark-boot-successful failed"; return 1; }
	else
		jetson_ctl set-active-boot-slot "$_n" || return 1
	fi
	jetson_write_state "$1"
}

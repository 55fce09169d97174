/*
 * reboot-tryboot: restart into the Raspberry Pi firmware's one-shot
 * "tryboot" mode.
 *
 * The firmware reads autoboot.txt; with tryboot_a_b=1 a tryboot restart boots
 * the [tryboot] section's boot_partition once.  The flag is cleared before
 * the firmware starts, so a crash, a hang reset by the watchdog or a plain
 * reboot go back to the default partition: the update is tried once.
 *
 * The flag travels as the argument of reboot(2)'s LINUX_REBOOT_CMD_RESTART2,
 * "0 tryboot" (0 = the default partition, the [tryboot] section picks the
 * other).  busybox's reboot calls reboot(RB_AUTOBOOT) and cannot pass it,
 * hence this program.  The kernel hands the string to the firmware through
 * the mailbox (the Raspberry Pi kernel's reboot-flag patch).
 *
 * Like `reboot -f`: no shutdown scripts; the file systems are synced first.
 * Usage: reboot-tryboot [PARTITION]   (default 0)
 */
#include <errno.h>
#include <linux/reboot.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char arg[32];
	const char *partition = argc > 1 ? argv[1] : "0";
	char *end;
	long n;

	if (argc > 2 || (argc == 2 && strcmp(argv[1], "--help") == 0)) {
		fprintf(stderr, "usage: reboot-tryboot [PARTITION]\n"
			"restart once into the firmware's tryboot mode (autoboot.txt's [tryboot] section)\n");
		return 2;
	}
	/* The firmware parses a decimal partition number: refuse anything else. */
	errno = 0;
	n = strtol(partition, &end, 10);
	if (errno || *partition == '\0' || *end != '\0' || n < 0 || n > 127) {
		fprintf(stderr, "reboot-tryboot: bad partition number '%s'\n", partition);
		return 2;
	}
	snprintf(arg, sizeof arg, "%ld tryboot", n);
	sync();
	/* glibc's reboot() takes no argument string: call the syscall directly. */
	syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
		LINUX_REBOOT_CMD_RESTART2, arg);
	perror("reboot-tryboot: reboot(LINUX_REBOOT_CMD_RESTART2)");
	return 1;
}

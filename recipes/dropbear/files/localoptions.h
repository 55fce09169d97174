/* buildsys: dropbear on a read-only root with keys-only login.
 * Host keys live on the /data partition, made on first boot by
 * /etc/init.d/S50dropbear, so the image carries no secret and two builds
 * of it are identical. */
#define DSS_PRIV_FILENAME "/data/dropbear/dropbear_dss_host_key"
#define RSA_PRIV_FILENAME "/data/dropbear/dropbear_rsa_host_key"
#define ECDSA_PRIV_FILENAME "/data/dropbear/dropbear_ecdsa_host_key"
#define ED25519_PRIV_FILENAME "/data/dropbear/dropbear_ed25519_host_key"

/* Public keys only: root has no password anyway. */
#define DROPBEAR_SVR_PASSWORD_AUTH 0
#define DROPBEAR_SVR_PAM_AUTH 0

/* Not used on a device, and less code. */
#define DROPBEAR_SVR_AGENTFWD 0
#define DROPBEAR_X11FWD 0
/* No sftp-server in the image: scp uses the SCP protocol (scp -O). */
#define DROPBEAR_SFTPSERVER 0

#!/bin/sh
# Add (or update) one site's SFTP account: key only, chrooted to /srv/sftp/<site>, which holds
# one writable folder per collection the site contributes to. Idempotent; run as root in the
# sftp container (its entrypoint runs it for every line of sites.conf at start).
#
#   add-site.sh SITE UID PUBLIC_KEY_FILE COLLECTION [COLLECTION...]
#
# The collection's drop is then file:///opt/airflow/imaging-home/drop/SITE/COLLECTION in its
# config. SFTP_ROOT, SFTP_KEYS and SFTP_GROUP override the paths and group (tests).
set -eu
[ "$#" -ge 4 ] || { echo "usage: $0 SITE UID PUBLIC_KEY_FILE COLLECTION..." >&2; exit 2; }
site=$1 uid=$2 key=$3
shift 3
root=${SFTP_ROOT:-/srv/sftp}
keys=${SFTP_KEYS:-/etc/ssh/authorized_keys}
group=${SFTP_GROUP:-sftp-sites}
echo "$site" | grep -Eq '^[a-z][a-z0-9-]{1,30}$' || { echo "site names are lower-case letters, digits, -" >&2; exit 2; }
echo "$uid" | grep -Eq '^[0-9]{4,6}$' || { echo "UID must be a number of 4 to 6 digits (stable across restarts)" >&2; exit 2; }
grep -Eq '^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) ' "$key" || { echo "$key is not an OpenSSH public key" >&2; exit 2; }
getent group "$group" >/dev/null || groupadd --system "$group"
if ! getent passwd "$site" >/dev/null; then
  useradd --uid "$uid" --gid "$group" --no-create-home --home-dir / --shell /usr/sbin/nologin "$site"
fi
usermod --password '*' "$site"   # no password, but not locked: sshd refuses locked accounts even for keys
# The chroot and every folder above it are root's and not writable by others (sshd requires it).
install -d -o root -g root -m 0755 "$root" "$root/$site"
for collection in "$@"; do
  echo "$collection" | grep -Eq '^[a-z][a-z0-9_]{1,47}$' || { echo "bad collection id: $collection" >&2; exit 2; }
  install -d -o "$site" -g "$group" -m 0755 "$root/$site/$collection"
done
install -d -o root -g root -m 0755 "$keys"
install -o root -g root -m 0644 "$key" "$keys/$site"
echo "site $site: chroot $root/$site, collections: $*"

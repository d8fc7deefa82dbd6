#!/bin/sh
# The sftp container: a host key kept in its volume, one account per line of sites.conf
# ("SITE UID COLLECTION..."; the site's key in keys/SITE.pub), then sshd in the foreground.
set -eu
install -d -m 0755 /etc/ssh/host_keys /run/sshd
[ -f /etc/ssh/host_keys/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/host_keys/ssh_host_ed25519_key
grep -Ev '^[[:space:]]*(#|$)' /etc/sftp/sites.conf | while read -r site uid collections; do
  # shellcheck disable=SC2086 # one argument per collection
  /usr/local/sbin/add-site.sh "$site" "$uid" "/etc/sftp/keys/$site.pub" $collections
done
exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config

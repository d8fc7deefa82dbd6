#!/bin/sh
# Add a site to the stack's SFTP server: its own key-only account, chrooted to its own
# collections' folders of the drop (docs/operations.md, "Site uploads").
#
#   scripts/sftp-add-site.sh SITE UID PUBLIC_KEY_FILE COLLECTION [COLLECTION...]
#
# Records the site in deploy/sftp/sites.conf and its key in deploy/sftp/keys/SITE.pub (so the
# account comes back at every start), then creates it in the running container.
set -eu
[ "$#" -ge 4 ] || { echo "usage: $0 SITE UID PUBLIC_KEY_FILE COLLECTION..." >&2; exit 2; }
cd "$(dirname "$0")/.."
site=$1 uid=$2 key=$3
shift 3
grep -Eq "^$site " deploy/sftp/sites.conf && { echo "site $site is already in deploy/sftp/sites.conf" >&2; exit 2; }
grep -Eq "^[^#]* $uid " deploy/sftp/sites.conf && { echo "UID $uid is already used" >&2; exit 2; }
cp "$key" "deploy/sftp/keys/$site.pub"
echo "$site $uid $*" >> deploy/sftp/sites.conf
docker compose exec -T sftp /usr/local/sbin/add-site.sh "$site" "$uid" "/etc/sftp/keys/$site.pub" "$@"
for collection in "$@"; do
  echo "collection $collection: drop.url file:///opt/airflow/imaging-home/drop/$site/$collection"
done

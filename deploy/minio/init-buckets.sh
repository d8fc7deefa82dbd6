#!/bin/sh
# Create the archive's buckets in MinIO (run once by the minio-init service; idempotent).
# One bucket per storage tier, named <prefix>-<tier> as imaging_ingest.config.settings.Settings.bucket() does.
set -eu
prefix="${IMAGING_INGEST_BUCKET_PREFIX:-imaging}"
until mc alias set archive http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1; do
  echo "waiting for minio..."; sleep 2
done
for tier in raw staging quarantine public restricted; do
  mc mb --ignore-existing "archive/${prefix}-${tier}"
done
# Published versions are immutable: keep every object version, so nothing published is ever lost.
mc version enable "archive/${prefix}-public"
mc version enable "archive/${prefix}-restricted"
# The staging tier is a work area: manifests and de-identified copies expire.
mc ilm rule add --expire-days "${IMAGING_INGEST_STAGING_EXPIRY_DAYS:-30}" "archive/${prefix}-staging" || true
# The pipeline's own account, so that Airflow never holds the MinIO root credentials.
if [ -n "${IMAGING_S3_ACCESS_KEY:-}" ]; then
  mc admin user add archive "$IMAGING_S3_ACCESS_KEY" "$IMAGING_S3_SECRET_KEY"
  mc admin policy attach archive readwrite --user "$IMAGING_S3_ACCESS_KEY" || true
fi
# The API's account: read-only, and only the tiers it serves (public, restricted); never raw,
# staging or quarantine, and never a write.
if [ -n "${IMAGING_API_S3_ACCESS_KEY:-}" ]; then
  cat > /tmp/imaging-api-read.json <<JSON
{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
  "Action": ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"],
  "Resource": ["arn:aws:s3:::${prefix}-public", "arn:aws:s3:::${prefix}-public/*",
               "arn:aws:s3:::${prefix}-restricted", "arn:aws:s3:::${prefix}-restricted/*"]}]}
JSON
  mc admin policy create archive imaging-api-read /tmp/imaging-api-read.json
  mc admin user add archive "$IMAGING_API_S3_ACCESS_KEY" "$IMAGING_API_S3_SECRET_KEY"
  mc admin policy attach archive imaging-api-read --user "$IMAGING_API_S3_ACCESS_KEY" || true
fi
# The public tier is readable without credentials (downloads); every other tier stays private.
mc anonymous set download "archive/${prefix}-public"
echo "buckets ready: ${prefix}-{raw,staging,quarantine,public,restricted}"

#!/usr/bin/env bash
# `make airflow-ui`: the embedded setup with the real Airflow UI, in the foreground.
# An S3 server on loopback (moto, its own process), Airflow 3 (api-server, scheduler,
# dag-processor, triggerer via `airflow standalone`, SQLite, LocalExecutor), the demo
# collection's drop with a generated submission. Open http://127.0.0.1:${AIRFLOW_PORT:-8080}
# and log in as admin / admin. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
HOME_DIR=${IMAGING_INGEST_HOME:-$REPO/.demo/ui}
PORT=${AIRFLOW_PORT:-8080}
S3_PORT=${S3_PORT:-9555}
VENV=$REPO/.venv
export PATH=$VENV/bin:$PATH
mkdir -p "$HOME_DIR/airflow"

export IMAGING_INGEST_HOME=$HOME_DIR
export IMAGING_INGEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export IMAGING_INGEST_SECRET_FILE=$HOME_DIR/secret.key
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION=us-east-1
export AIRFLOW_HOME=$HOME_DIR/airflow
export AIRFLOW__CORE__DAGS_FOLDER=$REPO/dags
export AIRFLOW__CORE__PLUGINS_FOLDER=$REPO/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=5
export AIRFLOW__API__PORT=$PORT
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$PORT/execution/
# Keys generated once per demo home (never a fixed default a visitor could know).
for key in jwt.secret api.secret; do
  [ -f "$HOME_DIR/$key" ] || { "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$HOME_DIR/$key"; chmod 600 "$HOME_DIR/$key"; }
done
export AIRFLOW__API_AUTH__JWT_SECRET=${AIRFLOW__API_AUTH__JWT_SECRET:-$(cat "$HOME_DIR/jwt.secret")}
export AIRFLOW__API__SECRET_KEY=${AIRFLOW__API__SECRET_KEY:-$(cat "$HOME_DIR/api.secret")}
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$AIRFLOW_HOME/passwords.json
echo '{"admin": "admin"}' > "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
[ -f "$IMAGING_INGEST_SECRET_FILE" ] || { "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))' > "$IMAGING_INGEST_SECRET_FILE"; chmod 600 "$IMAGING_INGEST_SECRET_FILE"; }

"$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" > "$HOME_DIR/s3.log" 2>&1 &
S3_PID=$!
trap 'kill $S3_PID 2>/dev/null || true; kill 0 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$S3_PORT/" >/dev/null && break; sleep 0.2; done
"$VENV/bin/imaging-ingest" storage init
export IMAGING_INGEST_DROP_ROOT=$HOME_DIR/drop
SUB=$IMAGING_INGEST_DROP_ROOT/demo/site-a-3p-seed7
[ -f "$SUB/READY" ] || "$VENV/bin/imaging-ingest" synth "$SUB" --patients 3 --seed 7 --marker
echo "Airflow UI: http://127.0.0.1:$PORT  (admin / admin); S3 on $IMAGING_INGEST_S3_ENDPOINT"
exec "$VENV/bin/airflow" standalone

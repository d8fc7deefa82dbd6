#!/bin/bash
# Runs once, when the PostgreSQL volume is first initialised: the archive's catalog gets its own
# database and role, next to Airflow's metadata database (created from POSTGRES_DB).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<-SQL
  CREATE ROLE ${CATALOG_DB_USER} LOGIN PASSWORD '${CATALOG_DB_PASSWORD}';
  CREATE DATABASE ${CATALOG_DB_NAME} OWNER ${CATALOG_DB_USER};
SQL

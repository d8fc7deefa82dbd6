#!/bin/bash
# Runs once, when the PostgreSQL volume is first initialised: the archive's catalog gets its own
# database and role, next to Airflow's metadata database (created from POSTGRES_DB).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<-SQL
  CREATE ROLE ${CATALOG_DB_USER} LOGIN PASSWORD '${CATALOG_DB_PASSWORD}';
  CREATE DATABASE ${CATALOG_DB_NAME} OWNER ${CATALOG_DB_USER};
SQL
# The API's role: it reads the catalog and never writes (least privilege). Default privileges
# give it SELECT on every table the catalog role creates later (the migrations).
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$CATALOG_DB_NAME" <<-SQL
  CREATE ROLE ${CATALOG_READER_USER} LOGIN PASSWORD '${CATALOG_READER_PASSWORD}';
  GRANT CONNECT ON DATABASE ${CATALOG_DB_NAME} TO ${CATALOG_READER_USER};
  GRANT USAGE ON SCHEMA public TO ${CATALOG_READER_USER};
  GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${CATALOG_READER_USER};
  ALTER DEFAULT PRIVILEGES FOR ROLE ${CATALOG_DB_USER} IN SCHEMA public GRANT SELECT ON TABLES TO ${CATALOG_READER_USER};
SQL

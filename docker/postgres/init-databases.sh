#!/bin/sh
# Runs once, when the postgres container initialises an empty data volume (docker-entrypoint-initdb.d).
# Creates one role and one database for Synapse and one for relay-bridge. Synapse needs its database
# with C collation and UTF8 encoding. The passwords come from the files the init service generated
# (SYNAPSE_DB_PASSWORD_FILE, BRIDGE_DB_PASSWORD_FILE), or directly from SYNAPSE_DB_PASSWORD and BRIDGE_DB_PASSWORD.
set -eu
if [ -n "${SYNAPSE_DB_PASSWORD_FILE:-}" ]; then SYNAPSE_DB_PASSWORD=$(cat "$SYNAPSE_DB_PASSWORD_FILE"); fi
if [ -n "${BRIDGE_DB_PASSWORD_FILE:-}" ]; then BRIDGE_DB_PASSWORD=$(cat "$BRIDGE_DB_PASSWORD_FILE"); fi
: "${SYNAPSE_DB_PASSWORD:?set SYNAPSE_DB_PASSWORD or SYNAPSE_DB_PASSWORD_FILE}"
: "${BRIDGE_DB_PASSWORD:?set BRIDGE_DB_PASSWORD or BRIDGE_DB_PASSWORD_FILE}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v synapse_pw="$SYNAPSE_DB_PASSWORD" -v bridge_pw="$BRIDGE_DB_PASSWORD" <<'SQL'
CREATE ROLE synapse LOGIN PASSWORD :'synapse_pw';
CREATE DATABASE synapse OWNER synapse ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
CREATE ROLE relaybridge LOGIN PASSWORD :'bridge_pw';
CREATE DATABASE relaybridge OWNER relaybridge ENCODING 'UTF8' TEMPLATE template0;
SQL

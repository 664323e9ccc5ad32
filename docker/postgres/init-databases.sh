#!/bin/sh
# Runs once, when the postgres container initialises an empty data volume (docker-entrypoint-initdb.d).
# Creates one role and one database for Synapse and one for relay-bridge. Synapse needs its database
# with C collation and UTF8 encoding.
set -eu
: "${SYNAPSE_DB_PASSWORD:?set SYNAPSE_DB_PASSWORD}"
: "${BRIDGE_DB_PASSWORD:?set BRIDGE_DB_PASSWORD}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v synapse_pw="$SYNAPSE_DB_PASSWORD" -v bridge_pw="$BRIDGE_DB_PASSWORD" <<'SQL'
CREATE ROLE synapse LOGIN PASSWORD :'synapse_pw';
CREATE DATABASE synapse OWNER synapse ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
CREATE ROLE relaybridge LOGIN PASSWORD :'bridge_pw';
CREATE DATABASE relaybridge OWNER relaybridge ENCODING 'UTF8' TEMPLATE template0;
SQL

-- The Olm machines' crypto stores (src/matrix/crypto/store.ts): what the wasm OlmMachine keeps in IndexedDB,
-- written through to here record by record. Several machines share the table, one store_name each.
-- key_hash is an HMAC of the record's IndexedDB database, object store and key (room ids and Curve25519 keys
-- stay unreadable); value is the record sealed with AES-256-GCM under a key from the configuration. A row with
-- idb_store '' holds a database's schema; the row with idb_database '' proves which key the store was made with.
CREATE TABLE crypto_store (
  store_name   text NOT NULL,
  key_hash     bytea NOT NULL,
  idb_database text NOT NULL,
  idb_store    text NOT NULL,
  value        bytea NOT NULL,
  PRIMARY KEY (store_name, key_hash)
);

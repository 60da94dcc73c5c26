-- spacesync schema v1 for the embedded store (SQLite): the same tables, keys and meaning as
-- migrations/postgres/V1__init.sql. Payloads are JSON text; times are Unix milliseconds.

CREATE TABLE op_log (
    space_id     TEXT    NOT NULL,
    seq          INTEGER NOT NULL CHECK (seq > 0),
    operation_id TEXT    NOT NULL,
    client_id    TEXT,
    name         TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (space_id, seq),
    UNIQUE (space_id, operation_id)
) WITHOUT ROWID;

CREATE TABLE snapshots (
    space_id   TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    format     INTEGER NOT NULL,
    data       BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (space_id, seq)
) WITHOUT ROWID;

CREATE TABLE quarantine (
    space_id     TEXT    NOT NULL,
    operation_id TEXT    NOT NULL,
    client_id    TEXT,
    name         TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    code         TEXT    NOT NULL,
    detail       TEXT    NOT NULL,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (space_id, operation_id)
) WITHOUT ROWID;

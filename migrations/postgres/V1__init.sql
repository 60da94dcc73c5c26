-- spacesync schema v1: the append-only operation log, snapshots and quarantine.
-- Every index and constraint is named so that `spacesync doctor` can compare the live schema
-- with this one.

CREATE TABLE op_log (
    space_id     text        NOT NULL,
    seq          bigint      NOT NULL,
    operation_id text        NOT NULL,
    client_id    text,
    name         text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT op_log_pkey PRIMARY KEY (space_id, seq),
    CONSTRAINT op_log_operation_id_key UNIQUE (space_id, operation_id),
    CONSTRAINT op_log_seq_positive CHECK (seq > 0)
);

CREATE TABLE snapshots (
    space_id   text        NOT NULL,
    seq        bigint      NOT NULL,
    format     integer     NOT NULL,
    data       bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT snapshots_pkey PRIMARY KEY (space_id, seq)
);

CREATE TABLE quarantine (
    space_id     text        NOT NULL,
    operation_id text        NOT NULL,
    client_id    text,
    name         text        NOT NULL,
    payload      jsonb       NOT NULL,
    code         text        NOT NULL,
    detail       text        NOT NULL,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now(),
    attempts     integer     NOT NULL DEFAULT 1,
    CONSTRAINT quarantine_pkey PRIMARY KEY (space_id, operation_id)
);

-- +goose Up
-- The control plane's own certificate authority for control plane <-> agent
-- mutual TLS: one root, its key sealed with the control plane's secret
-- (the same sealing as hosts' secrets), kept here because PostgreSQL is the
-- only state Wrenn holds, shared by every control plane replica and backed
-- up with everything else.
CREATE TABLE host_ca (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    cert_pem   TEXT NOT NULL,
    key_enc    BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every certificate issued to a host. A certificate is honoured only while
-- its row exists: deleting the host deletes its rows, which revokes its
-- certificates at the next request.
CREATE TABLE host_certificates (
    serial     TEXT PRIMARY KEY,
    host_id    UUID NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    not_after  TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX host_certificates_host ON host_certificates (host_id);

-- +goose Down
DROP TABLE host_certificates;
DROP TABLE host_ca;

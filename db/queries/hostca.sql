-- name: GetHostCA :one
SELECT cert_pem, key_enc FROM host_ca WHERE id = 1;

-- name: CreateHostCA :exec
INSERT INTO host_ca (id, cert_pem, key_enc) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING;

-- name: AddHostCertificate :exec
INSERT INTO host_certificates (serial, host_id, not_after) VALUES ($1, $2, $3);

-- name: HostCertificateValid :one
SELECT EXISTS (
    SELECT 1 FROM host_certificates
    WHERE serial = $1 AND host_id = $2 AND not_after > now()
);

-- name: PruneHostCertificates :exec
DELETE FROM host_certificates WHERE host_id = $1 AND not_after <= now();

-- name: CountHostCertificates :one
SELECT count(*) FROM host_certificates WHERE host_id = $1;

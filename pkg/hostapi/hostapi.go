// Package hostapi holds what the control plane and the agents agree on
// over the wire besides the hostagent.v1 API: registration, heartbeats,
// and the headers and errors of proxied sandbox traffic.
package hostapi

import (
	"encoding/json"
	"net/http"
)

// OCIImagePrefix starts the name of a guest image an agent made from an
// OCI image for one template build: no team lists or starts from it.
const OCIImagePrefix = "oci-"

// RegisterRequest exchanges a one-time token and a certificate request
// for the host's identity.
type RegisterRequest struct {
	Token string `json:"token"`
	Name  string `json:"name"`
	// Address is host:port where the control plane reaches the agent.
	Address string `json:"address"`
	// CSR is a PEM certificate request for the key the agent made; the
	// key never leaves the host.
	CSR string `json:"csr"`
}

// RegisterResponse carries the host's ID and its certificate, which the
// agent serves its API with and presents to the control plane; the
// agent accepts calls only from a certificate CA signed for the control
// plane.
type RegisterResponse struct {
	HostID string `json:"host_id"`
	HostCertificate
	// Secret authenticates the host's reports only to a control plane
	// serving plain HTTP (development: `wrenn dev`), where it cannot
	// present its certificate; empty otherwise.
	Secret string `json:"secret,omitempty"`
}

// HostCertificate is a certificate issued to a host (PEM) and the CA
// (PEM) that issued it.
type HostCertificate struct {
	Certificate string `json:"certificate"`
	CA          string `json:"ca"`
}

// RenewRequest asks for a new certificate for a new key, before the
// current one expires (POST /v1/hosts/{hostID}/certificate, made with
// the current certificate).
type RenewRequest struct {
	CSR string `json:"csr"`
}

// CertificatePath is the renewal route under /v1/hosts/{hostID}.
const CertificatePath = "/certificate"

// Heartbeat is what an agent reports about itself.
type Heartbeat struct {
	Address string `json:"address"`
	Capacity
}

// Capacity is what a host has and what its sandboxes hold of it.
type Capacity struct {
	Runtime            string   `json:"runtime"`
	Accelerator        string   `json:"accelerator"`
	CPUs               int32    `json:"cpus"`
	MemoryMiB          int64    `json:"memory_mib"`
	DiskFreeMiB        int64    `json:"disk_free_mib"`
	MaxSandboxes       int32    `json:"max_sandboxes"`
	Sandboxes          int32    `json:"sandboxes"`
	CommittedVCPUs     int32    `json:"committed_vcpus"`
	CommittedMemoryMiB int64    `json:"committed_memory_mib"`
	Templates          []string `json:"templates"`
}

// HeartbeatResponse tells the agent when to report next.
type HeartbeatResponse struct {
	IntervalSeconds int `json:"interval_seconds"`
}

// Headers of a request the control plane's sandbox proxy forwards to the
// agent. An agent run alone (without a control plane) checks its secret
// in HeaderProxySecret, because the request's Authorization belongs to
// the sandbox (envd's user selection); from the control plane, mutual TLS
// authenticates the request.
const (
	HeaderProxySecret  = "X-Wrenn-Agent-Secret"
	HeaderProxySandbox = "X-Wrenn-Sandbox"
	HeaderProxyPort    = "X-Wrenn-Port"
)

// proxyError is the E2B proxy's error shape (the SDK reads code and
// message; a 502 is how it learns a sandbox is gone).
type proxyError struct {
	SandboxID string `json:"sandboxId,omitempty"`
	Code      int    `json:"code"`
	ErrorCode string `json:"error_code"`
	Message   string `json:"message"`
}

// WriteProxyError writes an error in the sandbox proxy's shape.
func WriteProxyError(w http.ResponseWriter, status int, sandboxID, errorCode, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(proxyError{SandboxID: sandboxID, Code: status, ErrorCode: errorCode, Message: msg})
}

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

// RegisterRequest exchanges a one-time token for host credentials.
type RegisterRequest struct {
	Token string `json:"token"`
	Name  string `json:"name"`
	// Address is host:port where the control plane reaches the agent.
	Address string `json:"address"`
}

// RegisterResponse carries the host's ID and the secret it uses from then
// on, both to authenticate its heartbeats and to accept the control
// plane's calls.
type RegisterResponse struct {
	HostID string `json:"host_id"`
	Secret string `json:"secret"`
}

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
// agent. The agent's secret travels in its own header because the
// request's Authorization belongs to the sandbox (envd's user selection).
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

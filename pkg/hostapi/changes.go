package hostapi

// SandboxesChanged is an agent's report that it changed these sandboxes'
// state on its own (a timeout paused or destroyed them, a guest died);
// the control plane asks the agent for each one's state at once.
type SandboxesChanged struct {
	Sandboxes []string `json:"sandboxes"`
}

// SandboxesChangedPath is where an agent posts a SandboxesChanged, under
// /v1/hosts/{hostID}.
const SandboxesChangedPath = "/sandboxes/changed"

// MaxSandboxesChanged bounds the sandboxes in one SandboxesChanged.
const MaxSandboxesChanged = 1000

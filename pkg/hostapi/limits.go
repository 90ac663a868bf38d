package hostapi

// Exec answers with a command's output whole, so each stream is kept up
// to a bound (the request's max_output_bytes, else DefaultExecOutput,
// never more than MaxExecOutput) and the rest is read and dropped: a
// command printing without end costs the agent and the control plane a
// bounded amount of memory. ExecStream is for output of any size.
const (
	DefaultExecOutput = 16 << 20
	MaxExecOutput     = 64 << 20
)

// MaxAgentResponse bounds one message the control plane reads from an
// agent: the largest is an Exec answer, two streams at their bound.
const MaxAgentResponse = 2*MaxExecOutput + 1<<20

// MaxAgentRequest bounds one message an agent reads from the control
// plane: the largest is a unary WriteFile of 16 MiB.
const MaxAgentRequest = 32 << 20

// Package limits is the one home of what a sandbox gets when a request
// leaves a value unset and of the bounds on what it may ask for. The
// control plane's API and the host agent both check requests against
// these; an agent also bounds vCPUs and memory by its own host.
package limits

import "time"

// Defaults for a request that leaves a value at zero.
const (
	DefaultVCPUs     = 1
	DefaultMemoryMiB = 256
	DefaultTimeout   = 5 * time.Minute
	// DiskHeadroomMiB is what a sandbox's disk gets beyond its template's
	// root filesystem when the request names no size.
	DiskHeadroomMiB = 1024
)

// Bounds on a request.
const (
	MaxVCPUs     = 16
	MinMemoryMiB = 128
	MaxMemoryMiB = 65536
	MaxDiskMiB   = 1 << 20
	MinTimeout   = time.Second
	// MaxTimeout is how long a sandbox may run before its timeout acts;
	// a client extends it as often as it likes.
	MaxTimeout = 7 * 24 * time.Hour
)

// A sandbox's log: what one read returns.
const (
	DefaultLogEntries = 1000
	MaxLogEntries     = 10000
)

package hostagent

import (
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
)

// execOutputLimit is the bound on each of a command's streams that an
// Exec request asks for (hostapi.DefaultExecOutput when it names none).
func execOutputLimit(requested uint64) (int, error) {
	switch {
	case requested == 0:
		return hostapi.DefaultExecOutput, nil
	case requested > hostapi.MaxExecOutput:
		return 0, fault.Errorf(fault.Invalid, "max_output_bytes %d: this agent keeps at most %d; use ExecStream for more", requested, hostapi.MaxExecOutput)
	}
	return int(requested), nil
}

// appendCapped appends what fits of data to buf within limit and reports
// whether anything was dropped (now or before).
func appendCapped(buf, data []byte, limit int, truncated bool) ([]byte, bool) {
	room := limit - len(buf)
	if room >= len(data) {
		return append(buf, data...), truncated
	}
	if room > 0 {
		buf = append(buf, data[:room]...)
	}
	return buf, true
}

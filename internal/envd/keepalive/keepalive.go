// Package keepalive decides how often envd's server streams send keepalive
// events while idle, from the client's Keepalive-Ping-Interval header.
package keepalive

import (
	"net/http"
	"strconv"
	"time"
)

// Default is used when the header is missing or unparsable, as in E2B's envd.
const Default = 90 * time.Second

// Interval reads Keepalive-Ping-Interval (whole seconds).
func Interval(h http.Header) time.Duration {
	v := h.Get("Keepalive-Ping-Interval")
	if v == "" {
		return Default
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return Default
	}
	return time.Duration(n) * time.Second
}

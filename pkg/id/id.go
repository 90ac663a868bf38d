// Package id converts between the UUIDs the database keys every entity by
// and the prefixed strings ("sb-…", "team-…") that appear on the wire. The
// conversion happens only at API and RPC boundaries, so a sandbox ID can
// never be passed where a team ID is expected without failing to parse.
package id

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Kind is the prefix of one entity's wire IDs.
type Kind string

const (
	Sandbox  Kind = "sb"
	User     Kind = "usr"
	Team     Kind = "team"
	APIKey   Kind = "key"
	Host     Kind = "host"
	Snapshot Kind = "snap"
	// Invitation is a pending invitation into a team.
	Invitation Kind = "inv"
	// Template is a team's built template; Build one run of its spec.
	Template Kind = "tpl"
	Build    Kind = "bld"
)

// PlatformTeam owns platform-wide resources such as the built-in templates.
var PlatformTeam = uuid.UUID{}

// New returns a fresh random (v4) UUID.
func New() uuid.UUID { return uuid.New() }

// Format renders u as "<kind>-<32 lowercase hex digits>".
func Format(k Kind, u uuid.UUID) string {
	return string(k) + "-" + hex.EncodeToString(u[:])
}

// Parse reads a wire ID of kind k. Anything else — another kind's prefix,
// a bare UUID, wrong length or case — is an error naming what was expected.
func Parse(k Kind, s string) (uuid.UUID, error) {
	rest, ok := strings.CutPrefix(s, string(k)+"-")
	if !ok || len(rest) != 32 {
		return uuid.UUID{}, fmt.Errorf("malformed %s ID %q: want %s-<32 hex digits>", k, truncate(s), k)
	}
	var u uuid.UUID
	for i := 0; i < 32; i++ {
		c := rest[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return uuid.UUID{}, fmt.Errorf("malformed %s ID %q: want %s-<32 hex digits>", k, truncate(s), k)
		}
	}
	if _, err := hex.Decode(u[:], []byte(rest)); err != nil {
		return uuid.UUID{}, fmt.Errorf("malformed %s ID %q: %w", k, truncate(s), err)
	}
	return u, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

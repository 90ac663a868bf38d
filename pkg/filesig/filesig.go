// Package filesig is the signature scheme of envd's /files URLs (E2B's
// "v1_" signatures): envd checks it, and clients sign download and upload
// URLs with it so that they can be handed to a browser or another program
// without the sandbox's access token.
package filesig

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
)

// Operations a signature covers: GET /files reads, POST /files writes.
const (
	Read  = "read"
	Write = "write"
)

// Sign returns the signature of a /files request for path (the raw
// `path` query value), operation (Read or Write), username (the
// `username` query value, empty when absent) and the sandbox's envd
// access token; expiration, when not zero, is the Unix time sent as
// `signature_expiration`.
func Sign(path, operation, username, token string, expiration int64) string {
	raw := path + ":" + operation + ":" + username + ":" + token
	if expiration != 0 {
		raw += ":" + strconv.FormatInt(expiration, 10)
	}
	sum := sha256.Sum256([]byte(raw))
	return "v1_" + base64.RawStdEncoding.EncodeToString(sum[:])
}

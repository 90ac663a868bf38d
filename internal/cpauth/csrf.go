package cpauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"

	"github.com/google/uuid"
)

// CSRFToken is the anti-forgery token of a browser session: a MAC of the
// session's ID, so every replica derives the same one and nothing is
// stored. A request authenticated by the session cookie must carry it in
// a header (or, for a WebSocket, a query parameter), which another site
// cannot read or set.
func (k *Keys) CSRFToken(session uuid.UUID) string {
	m := hmac.New(sha256.New, k.csrf)
	m.Write(session[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCSRF reports whether tok is session's anti-forgery token.
func (k *Keys) CheckCSRF(session uuid.UUID, tok string) bool {
	return tok != "" && hmac.Equal([]byte(tok), []byte(k.CSRFToken(session)))
}

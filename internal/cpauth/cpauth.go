// Package cpauth holds the control plane's credential primitives: password
// hashing, session tokens, API keys and host secrets, and the sealing of the
// few secrets that must be recoverable (agent secrets, envd tokens). Every
// key is derived from one master secret so that replicas sharing it agree.
package cpauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"
)

// Keys are the keys derived from the master secret.
type Keys struct {
	jwt  []byte
	csrf []byte
	seal cipher.AEAD
}

// NewKeys derives the signing and sealing keys from master, which must
// carry at least 32 bytes of entropy.
func NewKeys(master []byte) (*Keys, error) {
	if len(master) < 32 {
		return nil, errors.New("the control plane secret must be at least 32 bytes (WRENN_CP_SECRET or --secret-file)")
	}
	jk, err := hkdf.Key(sha256.New, master, nil, "wrenn-cp jwt", 32)
	if err != nil {
		return nil, err
	}
	ck, err := hkdf.Key(sha256.New, master, nil, "wrenn-cp csrf", 32)
	if err != nil {
		return nil, err
	}
	sk, err := hkdf.Key(sha256.New, master, nil, "wrenn-cp seal", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sk)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Keys{jwt: jk, csrf: ck, seal: aead}, nil
}

// Seal encrypts a secret for storage.
func (k *Keys) Seal(plain string) []byte {
	nonce := make([]byte, k.seal.NonceSize())
	rand.Read(nonce)
	return k.seal.Seal(nonce, nonce, []byte(plain), nil)
}

// Open decrypts what Seal produced.
func (k *Keys) Open(sealed []byte) (string, error) {
	n := k.seal.NonceSize()
	if len(sealed) < n {
		return "", errors.New("sealed secret too short")
	}
	p, err := k.seal.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return "", fmt.Errorf("open sealed secret (was the control plane secret changed?): %w", err)
	}
	return string(p), nil
}

// SessionClaims is what a session JWT carries; the session row it names
// must still exist, which is how logout revokes it.
type SessionClaims struct {
	jwt.RegisteredClaims
}

const issuer = "wrenn-cp"

// SignSession issues a JWT for session sid of user uid.
func (k *Keys) SignSession(sid, uid uuid.UUID, expires time.Time) (string, error) {
	c := SessionClaims{jwt.RegisteredClaims{
		Issuer: issuer, Subject: uid.String(), ID: sid.String(),
		IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(expires),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(k.jwt)
}

// ParseSession verifies a session JWT (signature, algorithm, issuer,
// expiry) and returns its session and user IDs.
func (k *Keys) ParseSession(tok string) (sid, uid uuid.UUID, err error) {
	var c SessionClaims
	_, err = jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return k.jwt, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer(issuer), jwt.WithExpirationRequired())
	if err != nil {
		return sid, uid, err
	}
	if sid, err = uuid.Parse(c.ID); err != nil {
		return sid, uid, fmt.Errorf("session id: %w", err)
	}
	if uid, err = uuid.Parse(c.Subject); err != nil {
		return sid, uid, fmt.Errorf("subject: %w", err)
	}
	return sid, uid, nil
}

// LooksLikeJWT tells session tokens from API keys without parsing either.
func LooksLikeJWT(tok string) bool { return strings.Count(tok, ".") == 2 }

// bcryptCost is the work factor of new password hashes.
var bcryptCost = bcrypt.DefaultCost

// HashPassword bcrypt-hashes a password.
func HashPassword(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcryptCost)
	return string(h), err
}

// dummyHash makes a login for an unknown email cost as much as a wrong
// password, so response times do not reveal which emails exist.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("wrenn-no-such-user"), bcrypt.DefaultCost)

// CheckPassword reports whether pw matches hash; an empty hash (unknown
// user) still spends a bcrypt comparison.
func CheckPassword(hash, pw string) bool {
	if hash == "" {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(pw))
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}

// APIKeyPrefix starts every Wrenn API key. Keys are 40 hex digits after
// it, the shape E2B's SDKs check for, so they work there unchanged.
const APIKeyPrefix = "e2b_"

// NewAPIKey returns a fresh key, its display prefix and its hash. Keys
// carry 160 random bits, so a plain SHA-256 is the right hash: nothing to
// brute-force, and verifying costs one lookup.
func NewAPIKey() (key, prefix string, hash []byte) {
	b := make([]byte, 20)
	rand.Read(b)
	key = APIKeyPrefix + fmt.Sprintf("%x", b)
	return key, KeyPrefix(key), HashSecret(key)
}

// KeyPrefix is the part of a key that is safe to show and log.
func KeyPrefix(key string) string {
	if len(key) > len(APIKeyPrefix)+8 {
		return key[:len(APIKeyPrefix)+8]
	}
	return "(malformed)"
}

// HashSecret hashes a high-entropy secret (API key, host secret, token).
func HashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// NewToken returns a random URL-safe secret with the given prefix.
func NewToken(prefix string) string {
	b := make([]byte, 32)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

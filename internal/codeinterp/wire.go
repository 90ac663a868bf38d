package codeinterp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// The Jupyter messaging protocol (version 5.3) as sent over ZeroMQ: a
// multipart message [identities..., "<IDS|MSG>", HMAC, header,
// parent_header, metadata, content, buffers...], the HMAC-SHA256 of the
// four JSON parts in hex, keyed by the connection file's key.
const (
	protocolVersion = "5.3"
	delimiter       = "<IDS|MSG>"
	signatureScheme = "hmac-sha256"
)

type msgHeader struct {
	MsgID    string `json:"msg_id"`
	Session  string `json:"session"`
	Username string `json:"username"`
	Date     string `json:"date"`
	MsgType  string `json:"msg_type"`
	Version  string `json:"version"`
}

// message is one Jupyter message; Content stays raw until its type is known.
type message struct {
	Header   msgHeader
	Parent   msgHeader
	Metadata map[string]any
	Content  json.RawMessage
	Topic    []byte // iopub only: the PUB topic frame(s)
}

// signer signs and checks messages with one kernel's key.
type signer struct{ key []byte }

func (s signer) sign(parts ...[]byte) []byte {
	if len(s.key) == 0 {
		return nil
	}
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		m.Write(p)
	}
	out := make([]byte, hex.EncodedLen(m.Size()))
	hex.Encode(out, m.Sum(nil))
	return out
}

// newMessage builds a request of msgType in session.
func newMessage(session, msgType string, content any) (*message, error) {
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", msgType, err)
	}
	return &message{
		Header: msgHeader{
			MsgID: uuid.NewString(), Session: session, Username: "wrenn", MsgType: msgType, Version: protocolVersion,
			Date: time.Now().UTC().Format(time.RFC3339Nano),
		},
		Metadata: map[string]any{},
		Content:  raw,
	}, nil
}

// encode returns the frames a DEALER sends (no identities: the kernel's
// ROUTER adds the peer's).
func (s signer) encode(m *message) ([][]byte, error) {
	header, err := json.Marshal(m.Header)
	if err != nil {
		return nil, err
	}
	parent := []byte("{}")
	if m.Parent.MsgID != "" {
		if parent, err = json.Marshal(m.Parent); err != nil {
			return nil, err
		}
	}
	meta, err := json.Marshal(m.Metadata)
	if err != nil {
		return nil, err
	}
	content := []byte(m.Content)
	if len(content) == 0 {
		content = []byte("{}")
	}
	return [][]byte{[]byte(delimiter), s.sign(header, parent, meta, content), header, parent, meta, content}, nil
}

var errBadSignature = errors.New("message signature does not match the kernel's key")

// decode parses frames received from a kernel and checks their signature.
func (s signer) decode(frames [][]byte) (*message, error) {
	i := 0
	for ; i < len(frames); i++ {
		if bytes.Equal(frames[i], []byte(delimiter)) {
			break
		}
	}
	if len(frames)-i < 6 {
		return nil, fmt.Errorf("malformed message: %d frames, delimiter at %d", len(frames), i)
	}
	sig, parts := frames[i+1], frames[i+2:i+6]
	if want := s.sign(parts...); !hmac.Equal(sig, want) {
		return nil, errBadSignature
	}
	m := &message{Content: json.RawMessage(parts[3])}
	if i > 0 {
		m.Topic = frames[0]
	}
	if err := json.Unmarshal(parts[0], &m.Header); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if err := json.Unmarshal(parts[1], &m.Parent); err != nil {
		return nil, fmt.Errorf("parent header: %w", err)
	}
	if err := json.Unmarshal(parts[2], &m.Metadata); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	return m, nil
}

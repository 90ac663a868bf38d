// Package fsmeta reads and writes what envd reports about files beyond
// os.Stat: owner and group names, and user metadata stored as "user.e2b.*"
// extended attributes.
package fsmeta

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

const xattrPrefix = "user.e2b."

// Metadata returns a file's user.e2b.* attributes without the prefix. A
// filesystem without xattr support has no metadata.
func Metadata(path string) (map[string]string, error) {
	size, err := unix.Llistxattr(path, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, fmt.Errorf("list xattrs of %s: %w", path, err)
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(path, buf)
	if err != nil {
		return nil, fmt.Errorf("list xattrs of %s: %w", path, err)
	}
	var out map[string]string
	for name := range strings.SplitSeq(string(buf[:size]), "\x00") {
		if !strings.HasPrefix(name, xattrPrefix) {
			continue
		}
		val, err := getxattr(path, name)
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = map[string]string{}
		}
		out[strings.TrimPrefix(name, xattrPrefix)] = val
	}
	return out, nil
}

func getxattr(path, name string) (string, error) {
	n, err := unix.Lgetxattr(path, name, nil)
	if err != nil {
		return "", fmt.Errorf("read xattr %s of %s: %w", name, path, err)
	}
	buf := make([]byte, n)
	n, err = unix.Lgetxattr(path, name, buf)
	if err != nil {
		return "", fmt.Errorf("read xattr %s of %s: %w", name, path, err)
	}
	return string(buf[:n]), nil
}

// ReplaceMetadata makes meta the file's whole metadata: attributes not in
// meta are removed.
func ReplaceMetadata(path string, meta map[string]string) error {
	old, err := Metadata(path)
	if err != nil {
		return err
	}
	for k := range old {
		if _, keep := meta[k]; !keep {
			if err := unix.Lremovexattr(path, xattrPrefix+k); err != nil {
				return fmt.Errorf("remove metadata %q of %s: %w", k, path, err)
			}
		}
	}
	for k, v := range meta {
		if err := unix.Lsetxattr(path, xattrPrefix+k, []byte(v), 0); err != nil {
			return fmt.Errorf("set metadata %q of %s: %w", k, path, err)
		}
	}
	return nil
}

// MaxKeyLen and MaxTotal bound metadata as the kernel's xattr limits do.
const (
	MaxKeyLen = 255 - len(xattrPrefix)
	MaxTotal  = 4096
)

// ValidateMetadata checks keys and values are printable ASCII and within the limits.
func ValidateMetadata(meta map[string]string) error {
	total := 0
	for k, v := range meta {
		if k == "" || len(k) > MaxKeyLen {
			return fmt.Errorf("metadata key %q: must be 1 to %d bytes", k, MaxKeyLen)
		}
		if !printable(k) || !printable(v) {
			return fmt.Errorf("metadata %q: keys and values must be printable ASCII", k)
		}
		total += len(k) + len(v)
	}
	if total > MaxTotal {
		return fmt.Errorf("metadata is %d bytes; at most %d are allowed", total, MaxTotal)
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

var names sync.Map // "u1000" / "g1000" -> name

// Owner is the user name for uid, or the number when it has none.
func Owner(uid uint32) string {
	return cachedName("u", uid, func(id string) (string, error) {
		u, err := user.LookupId(id)
		if err != nil {
			return "", err
		}
		return u.Username, nil
	})
}

// Group is the group name for gid, or the number when it has none.
func Group(gid uint32) string {
	return cachedName("g", gid, func(id string) (string, error) {
		g, err := user.LookupGroupId(id)
		if err != nil {
			return "", err
		}
		return g.Name, nil
	})
}

func cachedName(kind string, id uint32, lookup func(string) (string, error)) string {
	key := kind + strconv.FormatUint(uint64(id), 10)
	if v, ok := names.Load(key); ok {
		return v.(string)
	}
	name, err := lookup(strconv.FormatUint(uint64(id), 10))
	if err != nil {
		return strconv.FormatUint(uint64(id), 10)
	}
	names.Store(key, name)
	return name
}

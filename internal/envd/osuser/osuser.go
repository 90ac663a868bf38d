// Package osuser resolves the Unix users that sandbox requests act as and
// the paths they name, the way E2B's envd does ("~" is the user's home,
// relative paths are relative to the default workdir or the home
// directory), and performs filesystem operations with a user's permissions
// (Do).
package osuser

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// User is a resolved Unix account.
type User struct {
	Name   string
	UID    uint32
	GID    uint32
	Groups []uint32
	Home   string
}

// ErrUnknownUser is returned for a name that has no account on this system.
var ErrUnknownUser = errors.New("unknown user")

// Lookup resolves an account by name. Every request names its user, so
// answers are kept while /etc/passwd and /etc/group stay as they are (the
// same file, size and modification time); adding a user or changing a
// group replaces or rewrites them and so is seen at once.
func Lookup(name string) (*User, error) {
	stamp, stampOK := accountFilesStamp()
	if stampOK {
		lookups.Lock()
		c, ok := lookups.m[name]
		lookups.Unlock()
		if ok && c.stamp == stamp {
			return c.user.clone(), nil
		}
	}
	u, err := lookupUncached(name)
	if err != nil || !stampOK {
		return u, err
	}
	lookups.Lock()
	if len(lookups.m) >= maxCachedUsers {
		clear(lookups.m)
	}
	lookups.m[name] = cachedUser{user: u.clone(), stamp: stamp}
	lookups.Unlock()
	return u, nil
}

const maxCachedUsers = 64

var lookups = struct {
	sync.Mutex
	m map[string]cachedUser
}{m: map[string]cachedUser{}}

type cachedUser struct {
	user  *User
	stamp [2]fileStamp
}

type fileStamp struct {
	dev, ino uint64
	size     int64
	mtime    unix.Timespec
}

// accountFiles and lookupUncached are variables for tests.
var (
	accountFiles   = [2]string{"/etc/passwd", "/etc/group"}
	lookupUncached = lookup
)

func accountFilesStamp() ([2]fileStamp, bool) {
	var out [2]fileStamp
	for i, p := range accountFiles {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return out, false
		}
		out[i] = fileStamp{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim}
	}
	return out, true
}

func (u *User) clone() *User {
	c := *u
	c.Groups = slices.Clone(u.Groups)
	return &c
}

func lookup(name string) (*User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return nil, fmt.Errorf("%w: %q", ErrUnknownUser, name)
		}
		return nil, fmt.Errorf("look up user %q: %w", name, err)
	}
	return fromOS(u)
}

// Current is the account envd itself runs as.
func Current() (*User, error) {
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("look up current user: %w", err)
	}
	return fromOS(u)
}

func fromOS(u *user.User) (*User, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: gid %q: %w", u.Username, u.Gid, err)
	}
	out := &User{Name: u.Username, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				out.Groups = append(out.Groups, uint32(n))
			}
		}
	}
	if out.Home == "" {
		out.Home = "/"
	}
	return out, nil
}

// IsSelf reports whether u is the account this process runs as, in which
// case no credential switch is needed (or possible, when not root).
func (u *User) IsSelf() bool { return u.UID == uint32(os.Geteuid()) }

// CanActAs reports whether this process may act as u: root can be anyone,
// anyone else only itself.
func CanActAs(u *User) error {
	if os.Geteuid() == 0 || u.IsSelf() {
		return nil
	}
	return fmt.Errorf("envd runs as uid %d and cannot act as user %q; run it as root to select other users", os.Geteuid(), u.Name)
}

// Credential is what a child started for u runs with; nil means "as envd".
func (u *User) Credential() *syscall.Credential {
	if u.IsSelf() {
		return nil
	}
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
}

// ResolvePath turns a client's path into an absolute, cleaned one. "~" and
// "~/x" are in the user's home; an empty path is the default workdir, and
// other relative paths are relative to it; without a default workdir both
// are relative to the home directory.
func ResolvePath(path string, u *User, defaultWorkdir string) (string, error) {
	if path == "" {
		if defaultWorkdir != "" {
			return filepath.Clean(defaultWorkdir), nil
		}
		return filepath.Clean(u.Home), nil
	}
	if strings.HasPrefix(path, "~") {
		rest := path[1:]
		if rest != "" && !strings.HasPrefix(rest, "/") {
			return "", fmt.Errorf("path %q: expanding another user's home directory is not supported", path)
		}
		return filepath.Join(u.Home, rest), nil
	}
	if filepath.IsAbs(path) {
		return filepath.Clean(path), nil
	}
	if defaultWorkdir != "" {
		return filepath.Join(defaultWorkdir, path), nil
	}
	return filepath.Join(u.Home, path), nil
}

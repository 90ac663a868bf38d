// Package pglocal runs a private PostgreSQL server from the system's
// binaries: a cluster in a data directory of its own, owned by the process
// that started it, reachable only through a Unix socket inside that
// directory (mode 0700, so only its owner and root can connect; no TCP
// port, on which any local user could have connected as superuser and run
// programs with COPY … TO PROGRAM). `wrenn dev` keeps its data there
// between runs; tests start one in a temporary directory. A test that
// needs a database server as a deployment reaches one (over TCP, with a
// password) asks for TCP: passwords are then required there, and the
// superuser has none.
package pglocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options configure a server.
type Options struct {
	// DataDir holds the cluster; it is created (initdb) when empty.
	DataDir string
	// Port names the socket (.s.PGSQL.<port>); 0 is 5432.
	Port int
	// TCP also listens on 127.0.0.1 at Port, where every connection needs
	// a password (scram-sha-256): only roles given one connect that way,
	// never the superuser. It takes effect when the cluster is created.
	TCP bool
	// Fast turns off durability (fsync) for throwaway test clusters.
	Fast bool
	// Log receives the server's output; nil discards it.
	Log io.Writer
}

// Server is a running PostgreSQL.
type Server struct {
	Port    int
	DataDir string
	cmd     *exec.Cmd
	exited  chan error
}

// User is the superuser the cluster is created with. Connections come
// only through the socket in the data directory, which only the cluster's
// owner (and root) can reach, so they need no password.
const User = "wrenn"

// BinDir finds the newest installed PostgreSQL's binaries.
func BinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL is not installed: apt-get install postgresql (scripts/setup does)")
}

// PostgreSQL refuses to run as root; as root, run it as the postgres user.
func credential() (*syscall.Credential, int, int, error) {
	if os.Geteuid() != 0 {
		return nil, -1, -1, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("running as root needs the postgres user to own the cluster (apt-get install postgresql creates it): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid, nil
}

// Start initialises DataDir if needed and starts the server; it returns
// once the server accepts connections.
func Start(ctx context.Context, o Options) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	cred, uid, gid, err := credential()
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(o.DataDir, uid, gid); err != nil {
			return nil, err
		}
		for d := filepath.Dir(o.DataDir); d != "/"; d = filepath.Dir(d) {
			if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o001 == 0 {
				return nil, fmt.Errorf("the postgres user cannot reach %s: %s is not traversable by others (chmod o+x %s, or put the data elsewhere)", o.DataDir, d, d)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(o.DataDir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		authHost := "reject"
		if o.TCP {
			authHost = "scram-sha-256"
		}
		init := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", o.DataDir, "-U", User, "--auth-local=trust", "--auth-host="+authHost, "-E", "UTF8", "--no-instructions")
		init.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if out, err := init.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("initdb %s: %w: %s", o.DataDir, err, strings.TrimSpace(string(out)))
		}
	}
	if o.Port == 0 {
		o.Port = 5432
	}
	// No TCP unless asked for (clusters made before this also had trust on
	// 127.0.0.1), and the socket in the data directory, which initdb made
	// 0700.
	listen := ""
	if o.TCP {
		listen = "127.0.0.1"
	}
	args := []string{"-D", o.DataDir, "-p", strconv.Itoa(o.Port), "-c", "listen_addresses=" + listen,
		"-c", "unix_socket_directories=" + o.DataDir, "-c", "unix_socket_permissions=0700", "-c", "max_connections=200"}
	if o.Fast {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = o.Log, o.Log
	// Its own process group: a Ctrl-C meant for the parent reaches the
	// parent, which then stops the server in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s := &Server{Port: o.Port, DataDir: o.DataDir, cmd: cmd, exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait() }()
	if err := s.waitReady(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			c.Close(ctx)
			return nil
		}
		select {
		case werr := <-s.exited:
			s.exited <- werr
			return fmt.Errorf("postgres exited during start (%v); is %s in use by another server?", werr, s.DataDir)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not accept connections within 60 s: %w", err)
		}
	}
}

// URL is a connection string for database name, through the socket.
func (s *Server) URL(name string) string {
	q := url.Values{"host": {s.DataDir}, "port": {strconv.Itoa(s.Port)}, "sslmode": {"disable"}}
	return (&url.URL{Scheme: "postgres", User: url.User(User), Path: "/" + name, RawQuery: q.Encode()}).String()
}

// CreateDatabase creates database name unless it exists.
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var exists bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}

// Stop shuts the server down (fast shutdown: sessions end, data is kept)
// and waits for it.
func (s *Server) Stop() {
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// StartTemp starts a throwaway server (no durability) in a new directory
// under the system's temporary directory; stop removes it all.
func StartTemp(ctx context.Context, log io.Writer) (s *Server, stop func(), err error) {
	return StartTempWith(ctx, Options{Log: log})
}

// StartTempWith is StartTemp with o's port, TCP and log (its DataDir is
// the new directory's).
func StartTempWith(ctx context.Context, o Options) (s *Server, stop func(), err error) {
	dir, err := os.MkdirTemp("", "wrenn-pg-*")
	if err != nil {
		return nil, nil, err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	o.DataDir, o.Fast = filepath.Join(dir, "data"), true
	s, err = Start(ctx, o)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return s, func() {
		s.Stop()
		os.RemoveAll(dir)
	}, nil
}

package pglocal

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestStartStopRestart(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(tempDir(t), "pg")
	s, err := Start(ctx, Options{DataDir: dir, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDatabase(ctx, "wrenn"); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, s.URL("wrenn"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	s.Stop()
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("server still running after Stop: %v", err)
	}

	// A second start reuses the cluster and its data.
	s, err = Start(ctx, Options{DataDir: dir, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	c, err = pgx.Connect(ctx, s.URL("wrenn"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v int
	if err := c.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 42 {
		t.Fatalf("data after restart: %d %v", v, err)
	}
}

// TestOnlyItsOwnerConnects: the cluster trusted every connection on
// 127.0.0.1, so any local user was its superuser and could run programs
// as postgres (COPY ... TO PROGRAM). Now it listens on no TCP port, and
// its socket is in a 0700 directory: another local user cannot connect.
func TestOnlyItsOwnerConnects(t *testing.T) {
	ctx := context.Background()
	s, stop, err := StartTemp(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var listen string
	if err := c.QueryRow(ctx, "SHOW listen_addresses").Scan(&listen); err != nil || listen != "" {
		t.Errorf("listen_addresses %q %v: want none", listen, err)
	}
	st, err := os.Stat(s.DataDir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory %s: %v %v", s.DataDir, st.Mode(), err)
	}
	if os.Geteuid() != 0 {
		t.Skip("trying as another user needs root")
	}
	bin, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	attack := "COPY (SELECT 1) TO PROGRAM 'touch " + filepath.Join(os.TempDir(), "pglocal-pwned") + "'"
	for _, target := range [][]string{{"-h", s.DataDir, "-p", strconv.Itoa(s.Port)}, {"-h", "127.0.0.1", "-p", strconv.Itoa(s.Port)}} {
		args := append([]string{"-u", "nobody", "--", filepath.Join(bin, "psql"), "-w", "-U", User, "-d", "postgres", "-c", attack}, target...)
		out, err := exec.Command("runuser", args...).CombinedOutput()
		if err == nil {
			t.Errorf("user nobody ran %q through %v: %s", attack, target, out)
		}
		if target[1] == s.DataDir && !strings.Contains(string(out), "Permission denied") {
			t.Errorf("through the socket, want permission denied: %s", out)
		}
	}
	if _, err := os.Stat(filepath.Join(os.TempDir(), "pglocal-pwned")); err == nil {
		os.Remove(filepath.Join(os.TempDir(), "pglocal-pwned"))
		t.Error("another user ran a program as postgres")
	}
}

// tempDir is a test directory the postgres user can reach when tests run
// as root.
func tempDir(t *testing.T) string {
	d := t.TempDir()
	for _, p := range []string{d, filepath.Dir(d)} {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// TestTCPNeedsAPassword: a cluster asked for TCP (a deployment's database
// server, for the package test) answers on 127.0.0.1 only with a password:
// the superuser, who has none, is refused there; a role given one connects.
func TestTCPNeedsAPassword(t *testing.T) {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s, stop, err := StartTempWith(ctx, Options{Port: port, TCP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	tcp := func(user string) string {
		return fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable", user, port)
	}
	if c, err := pgx.Connect(ctx, tcp(User)); err == nil {
		c.Close(ctx)
		t.Fatal("the superuser connected over TCP without a password")
	}
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE ROLE app LOGIN PASSWORD 'app-password'"); err != nil {
		t.Fatal(err)
	}
	if c, err := pgx.Connect(ctx, tcp("app:wrong")); err == nil {
		c.Close(ctx)
		t.Fatal("a wrong password was accepted")
	}
	app, err := pgx.Connect(ctx, tcp("app:app-password"))
	if err != nil {
		t.Fatalf("a role with a password over TCP: %v", err)
	}
	app.Close(ctx)
}

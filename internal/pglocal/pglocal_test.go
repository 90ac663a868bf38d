package pglocal

import (
	"context"
	"os"
	"path/filepath"
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

func TestTakenPortFailsClearly(t *testing.T) {
	ctx := context.Background()
	a, stop, err := StartTemp(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if b, err := Start(ctx, Options{DataDir: filepath.Join(tempDir(t), "b"), Port: a.Port, Fast: true}); err == nil {
		b.Stop()
		t.Fatal("a second server on a taken port started")
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

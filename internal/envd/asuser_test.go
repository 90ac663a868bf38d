package envd

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"connectrpc.com/connect"

	fspb "git.omukk.dev/wrenn/sandbox/proto/envd/filesystem"
)

// File operations run with the requesting user's permissions (issue 21,
// item 16). These tests need root: envd acts as "nobody" only when it may
// switch users.

const nobody = "nobody"

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: envd switches to another user only as root")
	}
}

// sharedDir is a fresh directory that every user may enter and write in
// (t.TempDir's parent is root's alone).
func sharedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// rootDir is a directory inside shared that only root may write, holding a
// root-owned file everyone may read and a root-only secret.
func rootDir(t *testing.T, shared string) (dir, victim, secret string) {
	t.Helper()
	dir = filepath.Join(shared, "rootonly")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	victim = filepath.Join(dir, "victim.conf")
	secret = filepath.Join(dir, "secret")
	if err := os.WriteFile(victim, []byte("root's content"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("root's secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, victim, secret
}

func asUser[T any](req *connect.Request[T], name string) *connect.Request[T] {
	req.Header().Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(name+":")))
	return req
}

// chownTo gives path to nobody, as guest code running as that user would
// have created it.
func chownTo(t *testing.T, path string) {
	t.Helper()
	if err := os.Lchown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
}

func TestUserCannotReadRootOnlyFile(t *testing.T) {
	needRoot(t)
	e := startEnvd(t)
	shared := sharedDir(t)
	dir, victim, secret := rootDir(t, shared)

	resp, body := do(t, "GET", filesURL(e.url, secret, "username", nobody), nil, nil)
	if resp.StatusCode != http.StatusForbidden || bytes.Contains(body, []byte("root's secret")) || !strings.Contains(string(body), "permission denied") {
		t.Fatalf("nobody reading a root-only file: %d %s", resp.StatusCode, body)
	}
	// Through a symlink nobody planted: the same.
	link := filepath.Join(shared, "innocent.txt")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	chownTo(t, link)
	if resp, body := do(t, "GET", filesURL(e.url, link, "username", nobody), nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("nobody reading a root-only file through a symlink: %d %s", resp.StatusCode, body)
	}
	// Root reads it; nobody reads what everyone may.
	if resp, body := do(t, "GET", filesURL(e.url, secret, "username", "root"), nil, nil); resp.StatusCode != 200 || string(body) != "root's secret" {
		t.Fatalf("root reading its file: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, "GET", filesURL(e.url, victim, "username", nobody), nil, nil); resp.StatusCode != 200 || string(body) != "root's content" {
		t.Fatalf("nobody reading a world-readable file: %d %s", resp.StatusCode, body)
	}

	// A directory only root may list.
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := e.fs.ListDir(context.Background(), asUser(connect.NewRequest(&fspb.ListDirRequest{Path: dir}), nobody))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("nobody listing a root-only directory: %v", err)
	}
	ws, err := e.fs.WatchDir(context.Background(), asUser(connect.NewRequest(&fspb.WatchDirRequest{Path: dir}), nobody))
	if err == nil {
		for ws.Receive() {
		}
		err = ws.Err()
	}
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("nobody watching a root-only directory: %v", err)
	}
}

func TestUserCannotReplaceRootFileThroughSymlink(t *testing.T) {
	needRoot(t)
	e := startEnvd(t)
	shared := sharedDir(t)
	dir, victim, _ := rootDir(t, shared)
	upload := func(path string) *http.Response {
		resp, _ := do(t, "POST", filesURL(e.url, path, "username", nobody), strings.NewReader("owned by guest code"), map[string]string{"Content-Type": "application/octet-stream"})
		return resp
	}
	intact := func(what string) {
		t.Helper()
		if b, _ := os.ReadFile(victim); string(b) != "root's content" {
			t.Fatalf("%s: the root-owned file now holds %q", what, b)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 2 {
			t.Fatalf("%s: the root-only directory now holds %v", what, ents)
		}
	}

	// A symlink to the file itself.
	link := filepath.Join(shared, "config")
	os.Symlink(victim, link)
	chownTo(t, link)
	if resp := upload(link); resp.StatusCode != http.StatusForbidden {
		t.Errorf("upload through a symlink to a root file: %d", resp.StatusCode)
	}
	intact("symlink to the file")
	// A symlink to the directory, as a path component.
	dlink := filepath.Join(shared, "cfgdir")
	os.Symlink(dir, dlink)
	chownTo(t, dlink)
	if resp := upload(filepath.Join(dlink, "victim.conf")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("upload through a symlinked directory: %d", resp.StatusCode)
	}
	if resp := upload(filepath.Join(dlink, "new.conf")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("new file through a symlinked directory: %d", resp.StatusCode)
	}
	intact("symlinked directory")
	// The other file operations.
	ctx := context.Background()
	if _, err := e.fs.Move(ctx, asUser(connect.NewRequest(&fspb.MoveRequest{Source: filepath.Join(shared, "moved"), Destination: victim}), nobody)); err == nil {
		t.Error("move onto a root file succeeded")
	}
	os.WriteFile(filepath.Join(shared, "mine"), []byte("x"), 0o644)
	chownTo(t, filepath.Join(shared, "mine"))
	if _, err := e.fs.Move(ctx, asUser(connect.NewRequest(&fspb.MoveRequest{Source: filepath.Join(shared, "mine"), Destination: filepath.Join(dlink, "victim.conf")}), nobody)); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("move onto a root file through a symlink: %v", err)
	}
	if _, err := e.fs.Remove(ctx, asUser(connect.NewRequest(&fspb.RemoveRequest{Path: filepath.Join(dlink, "victim.conf")}), nobody)); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("remove a root file through a symlink: %v", err)
	}
	if _, err := e.fs.MakeDir(ctx, asUser(connect.NewRequest(&fspb.MakeDirRequest{Path: filepath.Join(dlink, "sub")}), nobody)); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("make a directory in a root directory: %v", err)
	}
	intact("move, remove, make dir")

	// Root may still write through its own symlinks, as root can.
	if resp, body := do(t, "POST", filesURL(e.url, link, "username", "root"), strings.NewReader("root wrote this"), map[string]string{"Content-Type": "application/octet-stream"}); resp.StatusCode != 200 {
		t.Fatalf("root writing through a symlink: %d %s", resp.StatusCode, body)
	}
	if b, _ := os.ReadFile(victim); string(b) != "root wrote this" {
		t.Fatalf("root's write through a symlink gave %q", b)
	}
}

// Guest code swaps a directory it owns for a symlink to a root directory
// while uploads run: the check is the kernel's, at each call, so no upload
// lands in the root directory whatever the timing.
func TestUserUploadRacingSymlinkSwap(t *testing.T) {
	needRoot(t)
	e := startEnvd(t)
	shared := sharedDir(t)
	dir, _, _ := rootDir(t, shared)
	mine := filepath.Join(shared, "mine")
	real := filepath.Join(shared, "real")
	os.Mkdir(real, 0o755)
	chownTo(t, real)

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tmp := filepath.Join(shared, "swap")
		for i := 0; !stop.Load(); i++ {
			target := real
			if i%2 == 1 {
				target = dir
			}
			os.Remove(tmp)
			if err := os.Symlink(target, tmp); err != nil {
				continue
			}
			os.Lchown(tmp, 65534, 65534)
			os.Rename(tmp, mine)
		}
	}()
	landed := 0
	for i := range 150 {
		resp, _ := do(t, "POST", filesURL(e.url, filepath.Join(mine, "f.txt"), "username", nobody), strings.NewReader("race "+string(rune('a'+i%26))), map[string]string{"Content-Type": "application/octet-stream"})
		if resp.StatusCode == 200 {
			landed++
		}
	}
	stop.Store(true)
	wg.Wait()
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("uploads landed in the root directory: %v", ents)
	}
	if landed == 0 {
		t.Fatal("no upload succeeded in the user's own directory")
	}
	t.Logf("%d of 150 uploads landed, all in the user's directory", landed)
}

// What a user may do keeps working as that user, and what is created is
// theirs.
func TestUserOperationsWork(t *testing.T) {
	needRoot(t)
	e := startEnvd(t)
	shared := sharedDir(t)
	ctx := context.Background()
	home := filepath.Join(shared, "home")
	if _, err := e.fs.MakeDir(ctx, asUser(connect.NewRequest(&fspb.MakeDirRequest{Path: home}), nobody)); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(home, "a", "b", "f.txt")
	if resp, body := do(t, "POST", filesURL(e.url, f, "username", nobody), strings.NewReader("v1"), map[string]string{"Content-Type": "application/octet-stream"}); resp.StatusCode != 200 {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	if resp, body := do(t, "POST", filesURL(e.url, f, "username", nobody), strings.NewReader("v2"), map[string]string{"Content-Type": "application/octet-stream"}); resp.StatusCode != 200 {
		t.Fatalf("overwrite: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, "GET", filesURL(e.url, f, "username", nobody), nil, nil); resp.StatusCode != 200 || string(body) != "v2" {
		t.Fatalf("download: %d %s", resp.StatusCode, body)
	}
	for _, p := range []string{home, filepath.Join(home, "a"), f} {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 65534 {
			t.Errorf("%s belongs to uid %d", p, st.Uid)
		}
	}
	if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
		t.Errorf("overwrite changed the mode to %v", fi.Mode())
	}
	moved := filepath.Join(home, "moved.txt")
	if _, err := e.fs.Move(ctx, asUser(connect.NewRequest(&fspb.MoveRequest{Source: f, Destination: moved}), nobody)); err != nil {
		t.Fatal(err)
	}
	ls, err := e.fs.ListDir(ctx, asUser(connect.NewRequest(&fspb.ListDirRequest{Path: home, Depth: 3}), nobody))
	if err != nil || len(ls.Msg.Entries) != 3 {
		t.Fatalf("list: %v %v", ls, err)
	}
	if _, err := e.fs.Remove(ctx, asUser(connect.NewRequest(&fspb.RemoveRequest{Path: home}), nobody)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Fatalf("remove left %v", err)
	}
	// A file the user may write in a directory it may not: written in place.
	dir, _, _ := rootDir(t, shared)
	writable := filepath.Join(dir, "shared.log")
	os.WriteFile(writable, []byte("old"), 0o666)
	os.Chmod(writable, 0o666)
	if resp, body := do(t, "POST", filesURL(e.url, writable, "username", nobody), strings.NewReader("new"), map[string]string{"Content-Type": "application/octet-stream"}); resp.StatusCode != 200 {
		t.Fatalf("writing a world-writable file in a root directory: %d %s", resp.StatusCode, body)
	}
	if b, _ := os.ReadFile(writable); string(b) != "new" {
		t.Fatalf("in-place write gave %q", b)
	}
}

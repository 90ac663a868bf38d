package osuser

import (
	"os"
	"path/filepath"
	"testing"
)

// Lookups are cached while the account files are unchanged, and looked up
// again as soon as either changes; callers get their own copies.
func TestLookupCacheFollowsAccountFiles(t *testing.T) {
	dir := t.TempDir()
	passwd, group := filepath.Join(dir, "passwd"), filepath.Join(dir, "group")
	os.WriteFile(passwd, []byte("a"), 0o644)
	os.WriteFile(group, []byte("b"), 0o644)
	oldFiles, oldLookup := accountFiles, lookupUncached
	t.Cleanup(func() { accountFiles, lookupUncached = oldFiles, oldLookup })
	accountFiles = [2]string{passwd, group}
	calls := 0
	lookupUncached = func(name string) (*User, error) {
		calls++
		return &User{Name: name, UID: 1000 + uint32(calls), Groups: []uint32{7}}, nil
	}
	clear(lookups.m)

	a, _ := Lookup("alice")
	b, _ := Lookup("alice")
	if calls != 1 || a.UID != b.UID {
		t.Fatalf("%d lookups for an unchanged account database", calls)
	}
	b.Groups[0] = 99
	if c, _ := Lookup("alice"); c.Groups[0] != 7 {
		t.Fatal("a caller's change reached the cache")
	}
	for i, f := range []string{passwd, group} {
		// A new user: the file grows (or is replaced).
		if err := os.WriteFile(f, []byte("changed"), 0o644); err != nil {
			t.Fatal(err)
		}
		if u, _ := Lookup("alice"); calls != 2+i || u.UID != 1000+uint32(calls) {
			t.Fatalf("after %s changed: %d lookups, uid %d", filepath.Base(f), calls, u.UID)
		}
	}
}

package memgen

import (
	"bytes"
	"crypto/rand"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	h, err := NewFull(64<<10, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.AddGeneration([]int{1, 3, 15}); err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(h.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if got.Gens != 2 || got.Owner[3] != 1 || got.Owner[2] != 0 || !bytes.Equal(got.Marshal(), h.Marshal()) {
		t.Fatalf("round trip: %+v", got)
	}
}

func TestHeaderRefusals(t *testing.T) {
	h, _ := NewFull(16<<10, 4096)
	good := h.Marshal()
	flip := func(i int) []byte { b := append([]byte(nil), good...); b[i] ^= 0x40; return b }
	version := append([]byte(nil), good...)
	version[8] = 2
	for name, c := range map[string]struct {
		b    []byte
		want string
	}{
		"empty":            {nil, "truncated"},
		"truncated":        {good[:len(good)-3], "truncated"},
		"trailing":         {append(append([]byte(nil), good...), 0), "trailing"},
		"magic":            {flip(0), "magic"},
		"version":          {version, "version 2"},
		"flipped map byte": {flip(fixedSize + 1), "checksum"},
		"flipped checksum": {flip(len(good) - 1), "checksum"},
	} {
		_, err := Unmarshal(c.b)
		if err == nil || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error about %q", name, err, c.want)
		}
	}
	if _, err := NewFull(10000, 4096); err == nil {
		t.Error("memory size not a multiple of the block size accepted")
	}
	if _, err := NewFull(8192, 3000); err == nil {
		t.Error("block size not a power of two accepted")
	}
	h, _ = NewFull(16<<10, 4096)
	for range MaxGenerations - 1 {
		if _, err := h.AddGeneration([]int{0}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.AddGeneration([]int{0}); err == nil {
		t.Error("a ninth generation was added")
	}
	if _, err := h.Collapsed().AddGeneration([]int{99}); err == nil {
		t.Error("a block outside the memory was accepted")
	}
}

func FuzzUnmarshal(f *testing.F) {
	h, _ := NewFull(32<<10, 4096)
	f.Add(h.Marshal())
	_, _ = h.AddGeneration([]int{0, 7})
	f.Add(h.Marshal())
	f.Add([]byte("WRNMEMH\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Unmarshal(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error without ErrCorrupt: %v", err)
			}
			return
		}
		if !bytes.Equal(h.Marshal(), b) {
			t.Fatal("an accepted header does not marshal back to itself")
		}
		for _, g := range h.Owner {
			if uint32(g) >= h.Gens {
				t.Fatal("accepted a block in a missing generation")
			}
		}
	})
}

func randInt(n int) int {
	v, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
	return int(v.Int64())
}

// writeDiff writes a sparse file of size holding only the given blocks of
// mem, as a Diff snapshot does.
func writeDiff(t *testing.T, path string, mem []byte, blocks []int, bs int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(len(mem))); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if _, err := f.WriteAt(mem[b*bs:(b+1)*bs], int64(b*bs)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestChainThroughManyPauses plays twelve pauses of a guest that writes a
// few random blocks between them: each later pause stores only those
// blocks, the chain never exceeds its bound (it collapses), and the chain
// always reads back as the guest's memory.
func TestChainThroughManyPauses(t *testing.T) {
	const bs, blocks = 4096, 512 // 2 MiB
	dir := t.TempDir()
	mem := make([]byte, bs*blocks)
	rand.Read(mem)
	full := filepath.Join(dir, "full.mem")
	if err := os.WriteFile(full, mem, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Create(filepath.Join(dir, "chain"), full, bs)
	if err != nil {
		t.Fatal(err)
	}
	collapsed := 0
	for pause := 1; pause <= 12; pause++ {
		var dirty []int
		for range 1 + randInt(20) {
			b := randInt(blocks)
			rand.Read(mem[b*bs : (b+1)*bs])
			dirty = append(dirty, b)
		}
		diff := filepath.Join(dir, "diff.mem")
		writeDiff(t, diff, mem, dirty, bs)
		before := c.H.Gens
		n, err := c.Append(diff, nil)
		if err != nil {
			t.Fatalf("pause %d: %v", pause, err)
		}
		if c.H.Gens < before {
			collapsed++
		}
		uniq := map[int]bool{}
		for _, b := range dirty {
			uniq[b] = true
		}
		if n != len(uniq) {
			t.Errorf("pause %d: %d blocks stored, %d dirtied", pause, n, len(uniq))
		}
		if c.H.Gens > MaxGenerations {
			t.Fatalf("chain of %d generations", c.H.Gens)
		}
		// Reopen from disk, as a restore does, and compare every byte.
		re, err := Open(filepath.Join(dir, "chain"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := re.Map()
		if err != nil {
			t.Fatal(err)
		}
		for b := range blocks {
			p, err := m.Page(uint64(b*bs), bs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p, mem[b*bs:(b+1)*bs]) {
				t.Fatalf("pause %d: block %d differs", pause, b)
			}
		}
		m.Close()
	}
	if collapsed == 0 {
		t.Error("twelve pauses and no collapse")
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "chain")); len(entries) != 2 {
		t.Errorf("old chains left behind: %v", entries)
	}
}

func TestOpenRefusesDamage(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full.mem")
	if err := os.WriteFile(full, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Create(filepath.Join(dir, "chain"), full, 4096)
	if err != nil {
		t.Fatal(err)
	}
	hdr := filepath.Join(c.cur, headerFile)
	b, _ := os.ReadFile(hdr)
	if err := os.WriteFile(hdr, b[:len(b)-2], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(dir, "chain")); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated header: %v", err)
	}
	if err := os.WriteFile(hdr, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(c.Path(0), 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(dir, "chain")); err == nil || !strings.Contains(err.Error(), "generation 0 is 4096 bytes") {
		t.Errorf("short generation file: %v", err)
	}
}

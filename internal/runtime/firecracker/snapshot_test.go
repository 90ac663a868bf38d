package firecracker

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"git.omukk.dev/wrenn/sandbox/internal/memgen"
	"git.omukk.dev/wrenn/sandbox/internal/runtime"
)

const testPages = 64

// pause stands for a Diff snapshot: a sparse file of the memory's size
// holding pages, written into mem too; it joins the chain in dir.
func pause(t *testing.T, dir string, mem []byte, pages ...int) {
	t.Helper()
	diff := filepath.Join(dir, "mem.diff")
	f, err := os.Create(diff)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(len(mem))); err != nil {
		t.Fatal(err)
	}
	for _, p := range pages {
		page := mem[p*pageSize : (p+1)*pageSize]
		rand.Read(page)
		if _, err := f.WriteAt(page, int64(p*pageSize)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	c, err := memgen.Open(filepath.Join(dir, memoryDir))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(diff, nil); err != nil {
		t.Fatal(err)
	}
}

// memoryOf reads a chain's latest memory.
func memoryOf(t *testing.T, dir string) []byte {
	t.Helper()
	c, err := memgen.Open(filepath.Join(dir, memoryDir))
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Map()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var out []byte
	for off := uint64(0); off < m.Size(); off += pageSize {
		p, err := m.Page(off, pageSize)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p...)
	}
	return out
}

func checksums(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	sums := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		b, err := os.ReadFile(p)
		sums[p] = sha256.Sum256(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

// A template made of a paused sandbox holds its latest memory as one
// image; clones start from it, pause on their own (past a collapse of
// their chain), and the template's files never change.
func TestSnapshotTemplateAndClones(t *testing.T) {
	d := &Driver{}
	root := t.TempDir()
	src, tpl := filepath.Join(root, "src"), filepath.Join(root, "tpl")
	for _, dir := range []string{src, tpl} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mem := make([]byte, testPages*pageSize)
	rand.Read(mem[:testPages/2*pageSize]) // the rest stays zero
	if err := os.WriteFile(filepath.Join(src, "mem.full"), mem, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := memgen.Create(filepath.Join(src, memoryDir), filepath.Join(src, "mem.full"), pageSize); err != nil {
		t.Fatal(err)
	}
	pause(t, src, mem, 1, 40)
	pause(t, src, mem, 2)
	for name, content := range map[string]string{diskFile: "the disk", vmstateFile: "device state"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	if err := d.SaveSnapshot(t.Context(), src, tpl); err != nil {
		t.Fatal(err)
	}
	if c, err := memgen.Open(filepath.Join(tpl, memoryDir)); err != nil || c.H.Gens != 1 {
		t.Fatalf("template chain: %v", err)
	}
	if !bytes.Equal(memoryOf(t, tpl), mem) {
		t.Fatal("the template's memory is not the sandbox's latest")
	}
	before := checksums(t, tpl)

	clones := map[string][]byte{}
	for _, id := range []string{"clone1", "clone2"} {
		dir := filepath.Join(root, id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := d.PrepareClone(t.Context(), tpl, runtime.Spec{SandboxID: id, Dir: dir, DiskMiB: 1}); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, diskFile)); string(got) != "the disk" {
			t.Fatalf("%s disk %q", id, got)
		}
		clones[id] = bytes.Clone(mem)
	}
	// clone1 pauses past its chain's bound of generations (a collapse);
	// clone2 once.
	for i := range 9 {
		pause(t, filepath.Join(root, "clone1"), clones["clone1"], i, 50+i)
	}
	pause(t, filepath.Join(root, "clone2"), clones["clone2"], 3)
	for id, want := range clones {
		if !bytes.Equal(memoryOf(t, filepath.Join(root, id)), want) {
			t.Errorf("%s's memory is not what it wrote", id)
		}
	}
	after := checksums(t, tpl)
	if len(after) != len(before) {
		t.Fatalf("the template's files changed: %d, then %d", len(before), len(after))
	}
	for p, sum := range before {
		if after[p] != sum {
			t.Errorf("the template's %s changed", p)
		}
	}
	if !bytes.Equal(memoryOf(t, tpl), mem) {
		t.Error("the template's memory changed")
	}
}

func TestPrepareCloneRefusesAChain(t *testing.T) {
	root := t.TempDir()
	tpl := filepath.Join(root, "tpl")
	mem := make([]byte, 4*pageSize)
	if err := os.MkdirAll(tpl, 0o700); err != nil {
		t.Fatal(err)
	}
	for name := range map[string]bool{diskFile: true, vmstateFile: true} {
		os.WriteFile(filepath.Join(tpl, name), []byte("x"), 0o600)
	}
	os.WriteFile(filepath.Join(tpl, "mem.full"), mem, 0o600)
	if _, err := memgen.Create(filepath.Join(tpl, memoryDir), filepath.Join(tpl, "mem.full"), pageSize); err != nil {
		t.Fatal(err)
	}
	pause(t, tpl, mem, 1)
	dir := filepath.Join(root, "clone")
	os.MkdirAll(dir, 0o700)
	if err := (&Driver{}).PrepareClone(t.Context(), tpl, runtime.Spec{Dir: dir}); err == nil {
		t.Fatal("cloned from a template whose memory is a chain of generations")
	}
}

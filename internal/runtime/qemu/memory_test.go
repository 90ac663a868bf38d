package qemu

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"git.omukk.dev/wrenn/sandbox/internal/runtime"
)

// TestMain lets the test binary play QEMU in a child process: map a memory
// file private as QEMU maps guest RAM, write to it as a guest would, and
// stay alive while the test saves what it wrote.
func TestMain(m *testing.M) {
	if path := os.Getenv("QEMU_TEST_GUEST_MEMORY"); path != "" {
		if err := playGuest(path); err != nil {
			fmt.Fprintln(os.Stderr, "guest:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const testPages = 64

// guestWrites applies the test guest's writes to mem, the memory as the
// guest sees it. The parent applies them to its copy of the file to know
// what must be saved.
func guestWrites(mem []byte) {
	page := func(i int) []byte { return mem[i*pageSize : (i+1)*pageSize] }
	copy(page(1), bytes.Clone(page(1))) // written, unchanged
	page(2)[100] ^= 0xff                // one byte changed
	clear(page(3))                      // data that became zeros
	for i := 10; i <= 12; i++ {         // a run of changed pages
		page(i)[0] ^= 0x55
	}
	copy(page(40), bytes.Repeat([]byte("wrenn"), pageSize/5)) // new data over a hole
	clear(page(41))                                           // zeros written over a hole
}

func playGuest(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, testPages*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		return err
	}
	_ = mem[5*pageSize] // read but not written: stays the file's page
	guestWrites(mem)
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // alive until the test is done
	return nil
}

// testMemoryFile makes a file of testPages pages: random data in the first
// half, a hole in the second.
func testMemoryFile(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	content := make([]byte, testPages*pageSize)
	rand.Read(content[:testPages/2*pageSize])
	path := filepath.Join(dir, "memory")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(content[:testPages/2*pageSize]); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(len(content))); err != nil {
		t.Fatal(err)
	}
	return path, content
}

// startGuest runs playGuest over path and waits until it has written.
func startGuest(t *testing.T, path string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "QEMU_TEST_GUEST_MEMORY="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("guest did not get ready: %q %v", line, err)
	}
	return cmd.Process.Pid
}

func TestSaveGuestMemoryWritesOnlyChangedPages(t *testing.T) {
	dir := t.TempDir()
	path, content := testMemoryFile(t, dir)
	pid := startGuest(t, path)

	res, err := saveGuestMemory(pid, path, path)
	if err != nil {
		t.Fatal(err)
	}
	guestWrites(content)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		for i := range testPages {
			if !bytes.Equal(got[i*pageSize:(i+1)*pageSize], content[i*pageSize:(i+1)*pageSize]) {
				t.Errorf("page %d differs from the guest's", i)
			}
		}
	}
	// Pages 1, 2, 3, 10–12, 40 and 41 were written; 2, 10–12 and 40
	// changed into non-zero bytes; 3 became a hole.
	if want := int64(8 * pageSize); res.Private != want {
		t.Errorf("private bytes %d, want %d", res.Private, want)
	}
	if want := int64(5 * pageSize); res.Written != want {
		t.Errorf("written bytes %d, want %d", res.Written, want)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if off, err := unix.Seek(int(f.Fd()), 3*pageSize, unix.SEEK_HOLE); err != nil || off != 3*pageSize {
		t.Errorf("page 3 (now zeros) is not a hole: next hole at %d (%v)", off, err)
	}

	// Nothing written since: a second save writes nothing.
	res, err = saveGuestMemory(pid, path, path)
	if err != nil || res.Written != 0 {
		t.Errorf("second save wrote %d bytes (%v)", res.Written, err)
	}
}

// A clone's guest maps its template's memory; the save goes to the clone's
// own copy and the template keeps every byte.
func TestSaveGuestMemoryLeavesTheSourceAlone(t *testing.T) {
	dir := t.TempDir()
	path, content := testMemoryFile(t, dir)
	template := bytes.Clone(content)
	pid := startGuest(t, path)

	target := filepath.Join(dir, "clone-memory")
	if err := runtime.CopyTree(t.Context(), path, target); err != nil {
		t.Fatal(err)
	}
	if _, err := saveGuestMemory(pid, path, target); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, template) {
		t.Error("the source memory file changed")
	}
	guestWrites(content)
	if got, _ := os.ReadFile(target); !bytes.Equal(got, content) {
		t.Error("the target does not hold the guest's memory")
	}
}

func TestSaveGuestMemoryNamesWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	path, _ := testMemoryFile(t, dir)
	pid := startGuest(t, path)
	if _, err := saveGuestMemory(pid, filepath.Join(dir, "other"), path); err == nil {
		t.Fatal("saved from a file the process does not map")
	}
	if _, err := saveGuestMemory(pid, path, filepath.Join(dir, "missing", "memory")); err == nil {
		t.Fatal("saved into a file that does not exist")
	}
}

package uffd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"git.omukk.dev/wrenn/sandbox/internal/memgen"
)

const pageSize = 4096

// TestMain lets the test binary play Firecracker in a child process: map
// guest memory, register it with a real userfaultfd, send the fd and the
// regions to the page server, then read the memory (every read of a page
// not yet there is a fault the server answers) and report checksums.
func TestMain(m *testing.M) {
	if os.Getenv("UFFD_TEST_VM") != "" {
		if err := playFirecracker(); err != nil {
			fmt.Fprintln(os.Stderr, "vm:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// playFirecracker maps two regions of REGION_PAGES pages each whose file
// offsets are swapped (region 0 holds the file's second half), hands them
// to the server, gives back pages [GIVE_BACK_FROM, GIVE_BACK_TO) of region
// 0 with MADV_DONTNEED after reading them, and prints one line per region:
// sha256 of its content as read.
func playFirecracker() error {
	pages, _ := strconv.Atoi(os.Getenv("REGION_PAGES"))
	from, _ := strconv.Atoi(os.Getenv("GIVE_BACK_FROM"))
	to, _ := strconv.Atoi(os.Getenv("GIVE_BACK_TO"))
	size := pages * pageSize
	fd, err := New(FeatureEventRemove)
	if err != nil {
		return fmt.Errorf("userfaultfd: %w", err)
	}
	var regions []Region
	var mems [][]byte
	for i := range 2 {
		mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			return err
		}
		base := uint64(uintptr(unsafe.Pointer(&mem[0])))
		if err := Register(fd, base, uint64(size)); err != nil {
			return fmt.Errorf("register: %w", err)
		}
		mems = append(mems, mem)
		regions = append(regions, Region{BaseHostVirtAddr: base, Size: uint64(size), Offset: uint64((1 - i) * size), PageSize: pageSize})
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: os.Getenv("UFFD_TEST_VM"), Net: "unix"})
	if err != nil {
		return err
	}
	defer conn.Close()
	body, _ := json.Marshal(regions)
	if _, _, err := conn.WriteMsgUnix(body, unix.UnixRights(fd), nil); err != nil {
		return err
	}
	for i, mem := range mems {
		// Touch pages in a scattered order, as a guest would.
		var sum byte
		for p := 0; p < pages; p++ {
			sum ^= mem[((p*7919)%pages)*pageSize+p%pageSize]
		}
		_ = sum
		h := sha256.Sum256(mem)
		fmt.Printf("region%d %s\n", i, hex.EncodeToString(h[:]))
	}
	// The guest gives pages back (a balloon): they must read as zeros.
	if err := unix.Madvise(mems[0][from*pageSize:to*pageSize], unix.MADV_DONTNEED); err != nil {
		return err
	}
	h := sha256.Sum256(mems[0][from*pageSize : to*pageSize])
	fmt.Printf("removed %s\n", hex.EncodeToString(h[:]))
	h = sha256.Sum256(mems[0])
	fmt.Printf("region0-after %s\n", hex.EncodeToString(h[:]))
	return nil
}

func shaHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestServesAVM(t *testing.T) {
	if os.Geteuid() != 0 {
		if b, _ := os.ReadFile("/proc/sys/vm/unprivileged_userfaultfd"); strings.TrimSpace(string(b)) != "1" {
			t.Skip("userfaultfd needs root here (vm.unprivileged_userfaultfd=0)")
		}
	}
	for _, prefetch := range []bool{false, true} {
		t.Run(fmt.Sprintf("prefetch=%v", prefetch), func(t *testing.T) {
			const pages = 2048 // 8 MiB per region
			dir := t.TempDir()
			file := make([]byte, 2*pages*pageSize)
			rand.Read(file)
			memFile := filepath.Join(dir, "mem")
			if err := os.WriteFile(memFile, file, 0o600); err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(dir, "uffd.sock")
			mem, err := OpenFile(memFile)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Listen(sock, mem, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			s.Prefetch = prefetch
			served := make(chan error, 1)
			go func() { served <- s.Serve(context.Background()) }()

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "UFFD_TEST_VM="+sock, "REGION_PAGES="+strconv.Itoa(pages), "GIVE_BACK_FROM=100", "GIVE_BACK_TO=164")
			var out, errOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			if err := cmd.Run(); err != nil {
				t.Fatalf("vm: %v\n%s", err, errOut.String())
			}
			select {
			case err := <-served:
				if err != nil {
					t.Fatalf("serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the server did not stop after the VM exited")
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(sock); !os.IsNotExist(err) {
				t.Errorf("socket left: %v", err)
			}
			size := pages * pageSize
			want0 := append([]byte(nil), file[size:]...)
			want1 := file[:size]
			zeros := make([]byte, 64*pageSize)
			after := append([]byte(nil), want0...)
			copy(after[100*pageSize:], zeros)
			expect := map[string]string{
				"region0": shaHex(want0), "region1": shaHex(want1),
				"removed": shaHex(zeros), "region0-after": shaHex(after),
			}
			got := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				k, v, _ := strings.Cut(line, " ")
				got[k] = v
			}
			for k, v := range expect {
				if got[k] != v {
					t.Errorf("%s: the VM read other content than the memory file's", k)
				}
			}
			if s.Stats.Faults.Load() == 0 {
				t.Error("no faults served")
			}
			if prefetch && s.Stats.Prefetched.Load() == 0 {
				t.Error("nothing prefetched")
			}
			if s.Stats.Removed.Load() != 64 {
				t.Errorf("removed pages: %d, want 64", s.Stats.Removed.Load())
			}
			t.Logf("faults %d, prefetched %d, zero-filled %d, removed %d", s.Stats.Faults.Load(), s.Stats.Prefetched.Load(), s.Stats.Zeroed.Load(), s.Stats.Removed.Load())
		})
	}
}

func TestRefusesBadHandshakes(t *testing.T) {
	dir := t.TempDir()
	memFile := filepath.Join(dir, "mem")
	if err := os.WriteFile(memFile, make([]byte, 16*pageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		body  string
		withF bool
		want  string
	}{
		"no fd":           {`[{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":4096}]`, false, "no userfaultfd"},
		"bad JSON":        {`[{`, true, "regions"},
		"no regions":      {`[]`, true, "no memory regions"},
		"beyond the file": {`[{"base_host_virt_addr":4096,"size":65536,"offset":4096,"page_size":4096}]`, true, "beyond"},
		"bad page size":   {`[{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":3000}]`, true, "page size"},
	} {
		t.Run(name, func(t *testing.T) {
			sock := filepath.Join(dir, "s.sock")
			mem, err := OpenFile(memFile)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Listen(sock, mem, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			served := make(chan error, 1)
			go func() { served <- s.Serve(context.Background()) }()
			conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var oob []byte
			if c.withF {
				f, _ := os.Open(memFile) // any fd stands in: the handshake is refused before it is used
				defer f.Close()
				oob = unix.UnixRights(int(f.Fd()))
			}
			if _, _, err := conn.WriteMsgUnix([]byte(c.body), oob, nil); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-served:
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("got %v, want an error about %q", err, c.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the server did not refuse the handshake")
			}
		})
	}
}

func TestServeStopsWithContext(t *testing.T) {
	dir := t.TempDir()
	memFile := filepath.Join(dir, "mem")
	if err := os.WriteFile(memFile, make([]byte, pageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	mem, err := OpenFile(memFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listen(filepath.Join(dir, "s.sock"), mem, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

// TestServesAChain serves a VM from a generational chain: a full image
// and two diffs; the VM must read the latest content of every page.
func TestServesAChain(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("userfaultfd needs root here")
	}
	const pages = 1024
	size := pages * pageSize
	dir := t.TempDir()
	// The file layout the VM expects: region 0 at offset size, region 1 at 0.
	latest := make([]byte, 2*size)
	rand.Read(latest)
	full := filepath.Join(dir, "full")
	if err := os.WriteFile(full, latest, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := memgen.Create(filepath.Join(dir, "chain"), full, pageSize)
	if err != nil {
		t.Fatal(err)
	}
	for gen := 0; gen < 2; gen++ {
		diff := filepath.Join(dir, "diff")
		f, err := os.Create(diff)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(int64(len(latest)))
		for p := gen; p < 2*pages; p += 5 {
			rand.Read(latest[p*pageSize : (p+1)*pageSize])
			f.WriteAt(latest[p*pageSize:(p+1)*pageSize], int64(p*pageSize))
		}
		f.Close()
		if _, err := c.Append(diff, nil); err != nil {
			t.Fatal(err)
		}
	}
	mem, err := c.Map()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "uffd.sock")
	s, err := Listen(sock, mem, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "UFFD_TEST_VM="+sock, "REGION_PAGES="+strconv.Itoa(pages), "GIVE_BACK_FROM=0", "GIVE_BACK_TO=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("vm: %v\n%s", err, errOut.String())
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "region0 "+shaHex(latest[size:])) || !strings.Contains(out.String(), "region1 "+shaHex(latest[:size])) {
		t.Fatal("the VM did not read the chain's latest content")
	}
}

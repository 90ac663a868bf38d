package qemu

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Guest RAM is the memory file mapped private (share=off): the guest reads
// it through the page cache, lazily, and every page it writes becomes a
// private page of the QEMU process. Those private pages are exactly what a
// pause must save, at 4 KiB granularity. A shared mapping would instead
// dirty the file's page cache, whose large folios (64 KiB–2 MiB on current
// kernels) are written back whole: an idle guest touching a few hundred
// pages made every pause write half of its memory again.

const pageSize = 4096

// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
const (
	pmPresent  = 1 << 63
	pmSwapped  = 1 << 62
	pmFilePage = 1 << 61
)

// mapping is one range of a process's address space mapping a file.
type mapping struct {
	start, end, offset uint64 // addresses, and the file offset at start
}

// fileMappings finds where process pid maps the file at path (matched by
// inode, so a path through a symlink finds it too).
func fileMappings(pid int, path string) ([]mapping, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("stat %s: no inode", path)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var maps []mapping
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[4] != strconv.FormatUint(st.Ino, 10) || filepath.Base(fields[5]) != fi.Name() {
			continue
		}
		lo, hi, _ := strings.Cut(fields[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		offset, err3 := strconv.ParseUint(fields[2], 16, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("parse mapping %q: %w", sc.Text(), err)
		}
		maps = append(maps, mapping{start, end, offset})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(maps) == 0 {
		return nil, fmt.Errorf("process %d does not map %s", pid, path)
	}
	return maps, nil
}

// savedMemory counts what saveGuestMemory did.
type savedMemory struct {
	Private int64 // bytes of pages the guest wrote since the file was mapped
	Written int64 // bytes of those that differed from the file and were written
}

// saveGuestMemory writes into target the pages the guest wrote since QEMU
// (pid, stopped) mapped source, skipping those whose bytes the file
// already holds and punching holes for pages that became zero, then syncs
// target. source and target are the same file except for a clone's first
// pause: its guest maps the template's memory, which stays untouched, and
// target starts as a copy of it. On error the pages it wrote are punched
// out again, giving their space back (the disk is likely full): the guest,
// which the caller keeps running, holds its own copies of them, and no
// saved state refers to the file until a pause succeeds.
func saveGuestMemory(pid int, source, target string) (res savedMemory, err error) {
	maps, err := fileMappings(pid, source)
	if err != nil {
		return res, err
	}
	pagemap, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return res, err
	}
	defer pagemap.Close()
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return res, err
	}
	defer mem.Close()
	out, err := os.OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		return res, err
	}
	defer out.Close()
	var written []span
	defer func() {
		if err != nil {
			for _, w := range written {
				_ = punch(out, w.off, w.len)
			}
		}
	}()

	const batch = 256 // pages read and compared at once
	entries := make([]byte, batch*8)
	guest := make([]byte, batch*pageSize)
	onDisk := make([]byte, batch*pageSize)
	for _, m := range maps {
		pages := (m.end - m.start) / pageSize
		for first := uint64(0); first < pages; first += batch {
			n := min(batch, pages-first)
			if _, err := pagemap.ReadAt(entries[:n*8], int64((m.start/pageSize+first)*8)); err != nil {
				return res, fmt.Errorf("read the page map of process %d: %w", pid, err)
			}
			// Runs of private pages within the batch.
			for i := uint64(0); i < n; {
				if !privatePage(entries[i*8:]) {
					i++
					continue
				}
				j := i
				for j < n && privatePage(entries[j*8:]) {
					j++
				}
				addr := m.start + (first+i)*pageSize
				w, err := saveRun(mem, out, addr, m.offset+addr-m.start, int((j-i)*pageSize), guest, onDisk, &written)
				res.Private += int64(j-i) * pageSize
				res.Written += w
				if err != nil {
					return res, err
				}
				i = j
			}
		}
	}
	if err := out.Sync(); err != nil {
		return res, fmt.Errorf("sync %s: %w", filepath.Base(target), err)
	}
	return res, nil
}

func privatePage(entry []byte) bool {
	e := binary.LittleEndian.Uint64(entry)
	return e&(pmPresent|pmSwapped) != 0 && e&pmFilePage == 0
}

// span is a range of the memory file.
type span struct{ off, len int64 }

func punch(f *os.File, off, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// saveRun saves size bytes of private pages at addr, which map the file at
// offset off, adding what it writes to written.
func saveRun(mem, out *os.File, addr, off uint64, size int, guest, onDisk []byte, written *[]span) (int64, error) {
	if _, err := mem.ReadAt(guest[:size], int64(addr)); err != nil {
		return 0, fmt.Errorf("read guest memory at %#x: %w", off, err)
	}
	got, err := out.ReadAt(onDisk[:size], int64(off))
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read the memory file at %#x: %w", off, err)
	}
	clear(onDisk[got:size])
	var n int64
	for p := 0; p < size; {
		if bytes.Equal(guest[p:p+pageSize], onDisk[p:p+pageSize]) {
			p += pageSize
			continue
		}
		zero := isZero(guest[p : p+pageSize])
		q := p + pageSize
		for q < size && !bytes.Equal(guest[q:q+pageSize], onDisk[q:q+pageSize]) && isZero(guest[q:q+pageSize]) == zero {
			q += pageSize
		}
		at := int64(off) + int64(p)
		if zero {
			// A hole reads as zeros and costs no space.
			if err := punch(out, at, int64(q-p)); err != nil {
				return n, fmt.Errorf("punch the memory file at %#x: %w", at, err)
			}
		} else {
			*written = append(*written, span{at, int64(q - p)})
			if _, err := out.WriteAt(guest[p:q], at); err != nil {
				return n, fmt.Errorf("write the memory file: %w", err)
			}
			n += int64(q - p)
		}
		p = q
	}
	return n, nil
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.NativeEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

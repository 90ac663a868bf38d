package memgen

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Mapped is a chain mapped read-only for serving pages.
type Mapped struct {
	h    *Header
	gens [][]byte
}

// Map maps every generation of the chain.
func (c *Chain) Map() (*Mapped, error) {
	m := &Mapped{h: c.H}
	for g := range int(c.H.Gens) {
		f, err := os.Open(c.Path(g))
		if err != nil {
			m.Close()
			return nil, err
		}
		b, err := unix.Mmap(int(f.Fd()), 0, int(c.H.MemSize), unix.PROT_READ, unix.MAP_PRIVATE)
		f.Close()
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("map generation %d: %w", g, err)
		}
		m.gens = append(m.gens, b)
	}
	return m, nil
}

// Size is the memory's size.
func (m *Mapped) Size() uint64 { return m.h.MemSize }

// Page returns the latest content of [off, off+size), which must lie in
// blocks of one generation (a page within a block, or blocks of the same
// owner).
func (m *Mapped) Page(off, size uint64) ([]byte, error) {
	if size == 0 || off+size > m.h.MemSize || off+size < off {
		return nil, fmt.Errorf("page [%d, +%d) outside the %d-byte memory", off, size, m.h.MemSize)
	}
	bs := uint64(m.h.BlockSize)
	g := m.h.Owner[off/bs]
	for b := off / bs; b*bs < off+size; b++ {
		if m.h.Owner[b] != g {
			return nil, errors.New("page spans blocks of different generations: use a block size of at least the page size")
		}
	}
	return m.gens[g][off : off+size], nil
}

// Close unmaps everything.
func (m *Mapped) Close() error {
	var errs []error
	for _, b := range m.gens {
		errs = append(errs, unix.Munmap(b))
	}
	m.gens = nil
	return errors.Join(errs...)
}

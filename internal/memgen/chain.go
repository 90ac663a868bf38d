package memgen

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A chain lives in a directory: "current" is a symlink to the live
// chain-<k> directory, which holds memory.hdr and gen-<n>.mem. Appending a
// generation writes its file and then the header (atomically: the header
// is the commit point). Collapsing builds chain-<k+1> beside the live one
// and swaps the symlink, so a crash at any point leaves a whole chain.
const (
	currentLink = "current"
	headerFile  = "memory.hdr"
)

func genFile(n int) string { return fmt.Sprintf("gen-%d.mem", n) }

// Chain is an open generational memory image.
type Chain struct {
	dir string // the directory holding "current"
	cur string // the live chain-<k> directory
	H   *Header
}

// Create starts a chain in dir from a full memory image (moved in).
func Create(dir, fullImage string, blockSize uint32) (*Chain, error) {
	st, err := os.Stat(fullImage)
	if err != nil {
		return nil, err
	}
	h, err := NewFull(uint64(st.Size()), blockSize)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cd := filepath.Join(dir, "chain-0")
	if err := os.MkdirAll(cd, 0o700); err != nil {
		return nil, err
	}
	if err := os.Rename(fullImage, filepath.Join(cd, genFile(0))); err != nil {
		return nil, err
	}
	if err := writeHeader(cd, h); err != nil {
		return nil, err
	}
	if err := swapLink(dir, "chain-0"); err != nil {
		return nil, err
	}
	return &Chain{dir: dir, cur: cd, H: h}, nil
}

// Open reads a chain and checks that its files are all there.
func Open(dir string) (*Chain, error) {
	target, err := os.Readlink(filepath.Join(dir, currentLink))
	if err != nil {
		return nil, fmt.Errorf("memory chain %s: %w", dir, err)
	}
	cd := filepath.Join(dir, target)
	b, err := os.ReadFile(filepath.Join(cd, headerFile))
	if err != nil {
		return nil, fmt.Errorf("memory chain %s: %w", dir, err)
	}
	h, err := Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("memory chain %s: %w", dir, err)
	}
	for g := range int(h.Gens) {
		st, err := os.Stat(filepath.Join(cd, genFile(g)))
		if err != nil {
			return nil, fmt.Errorf("memory chain %s: generation %d: %w", dir, g, err)
		}
		if uint64(st.Size()) != h.MemSize {
			return nil, fmt.Errorf("memory chain %s: generation %d is %d bytes, want %d", dir, g, st.Size(), h.MemSize)
		}
	}
	return &Chain{dir: dir, cur: cd, H: h}, nil
}

// Path is the file of generation g.
func (c *Chain) Path(g int) string { return filepath.Join(c.cur, genFile(g)) }

// Append adds a diff (a sparse file of the memory's size holding only the
// blocks written since the last generation, as a Diff snapshot is) as the
// next generation, collapsing the chain first when it is at its bound.
// It returns the number of blocks the diff held.
func (c *Chain) Append(diff string, progress io.Writer) (int, error) {
	dirty, err := DataBlocks(diff, c.H.BlockSize)
	if err != nil {
		return 0, err
	}
	st, err := os.Stat(diff)
	if err != nil {
		return 0, err
	}
	if uint64(st.Size()) != c.H.MemSize {
		return 0, fmt.Errorf("diff %s is %d bytes, the memory %d", diff, st.Size(), c.H.MemSize)
	}
	if c.H.NeedsCollapse() {
		if err := c.Collapse(progress); err != nil {
			return 0, err
		}
	}
	next := *c.H
	next.Owner = append([]uint8(nil), c.H.Owner...)
	g, err := next.AddGeneration(dirty)
	if err != nil {
		return 0, err
	}
	if err := os.Rename(diff, c.Path(int(g))); err != nil {
		return 0, err
	}
	if err := writeHeader(c.cur, &next); err != nil {
		return 0, err
	}
	c.H = &next
	return len(dirty), nil
}

// DataBlocks lists the blocks of a sparse file that hold data.
func DataBlocks(path string, blockSize uint32) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var out []int
	bs := int64(blockSize)
	for off := int64(0); off < st.Size(); {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data after off
		}
		if err != nil {
			return nil, fmt.Errorf("find data in %s: %w", path, err)
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("find holes in %s: %w", path, err)
		}
		for b := data / bs; b*bs < hole; b++ {
			if len(out) == 0 || out[len(out)-1] != int(b) {
				out = append(out, int(b))
			}
		}
		off = hole
	}
	return out, nil
}

// Collapse writes every block's latest content into one full image, in a
// new chain directory, and makes it the live one.
func (c *Chain) Collapse(progress io.Writer) error {
	k, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(c.cur), "chain-"))
	next := filepath.Join(c.dir, "chain-"+strconv.Itoa(k+1))
	_ = os.RemoveAll(next)
	if err := os.MkdirAll(next, 0o700); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(next)
		}
	}()
	if err := c.WriteImage(filepath.Join(next, genFile(0)), progress); err != nil {
		return err
	}
	h := c.H.Collapsed()
	if err := writeHeader(next, h); err != nil {
		return err
	}
	if err := swapLink(c.dir, filepath.Base(next)); err != nil {
		return err
	}
	ok = true
	old := c.cur
	c.cur, c.H = next, h
	return os.RemoveAll(old)
}

// WriteImage writes the memory as one full image at path (a new file,
// synced; blocks of zeros stay holes). The chain is only read.
func (c *Chain) WriteImage(path string, progress io.Writer) error {
	files := make([]*os.File, c.H.Gens)
	for g := range files {
		f, err := os.Open(c.Path(g))
		if err != nil {
			return err
		}
		defer f.Close()
		files[g] = f
	}
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := out.Truncate(int64(c.H.MemSize)); err != nil {
		return err
	}
	buf := make([]byte, c.H.BlockSize)
	zero := make([]byte, c.H.BlockSize)
	n := c.H.Blocks()
	for b, g := range c.H.Owner {
		off := int64(b) * int64(c.H.BlockSize)
		if _, err := files[g].ReadAt(buf, off); err != nil {
			return fmt.Errorf("read block %d of generation %d: %w", b, g, err)
		}
		if string(buf) == string(zero) {
			continue // stays a hole
		}
		if _, err := out.WriteAt(buf, off); err != nil {
			return fmt.Errorf("write block %d: %w", b, err)
		}
		if progress != nil && b%(n/10+1) == 0 {
			fmt.Fprintf(progress, "memory image from %d generations: %d%%\n", c.H.Gens, b*100/n)
		}
	}
	return out.Sync()
}

func writeHeader(dir string, h *Header) error {
	tmp := filepath.Join(dir, headerFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(h.Marshal()); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, headerFile))
}

func swapLink(dir, target string) error {
	tmp := filepath.Join(dir, currentLink+".tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, currentLink))
}

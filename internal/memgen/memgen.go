// Package memgen stores a paused guest's memory as generations: the first
// pause writes a full image (generation 0), each later pause only the
// blocks written since (a sparse file, as Firecracker's Diff snapshots
// are), and a header maps every block to the generation that holds its
// latest content. The chain is collapsed back into one full image before
// it grows past MaxGenerations, so a restore never reads through more than
// that many files.
//
// Header format, version 1 (little endian):
//
//	magic      [8]byte  "WRNMEMH\x00"
//	version    uint32   1
//	blockSize  uint32   a power of two, 512 bytes to 1 MiB
//	memSize    uint64   a multiple of blockSize
//	gens       uint32   1..MaxGenerations
//	reserved   uint32   0
//	owner      [memSize/blockSize]uint8  the generation holding each block
//	crc        uint32   CRC-32C of everything before it
package memgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Version is the header format this package writes and reads.
const Version = 1

// MaxGenerations bounds a chain; the next pause after it collapses.
const MaxGenerations = 8

var magic = [8]byte{'W', 'R', 'N', 'M', 'E', 'M', 'H', 0}

const fixedSize = 8 + 4 + 4 + 8 + 4 + 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt marks a header that cannot be trusted.
var ErrCorrupt = errors.New("corrupt memory header")

// Header maps blocks to generations.
type Header struct {
	BlockSize uint32
	MemSize   uint64
	Gens      uint32
	// Owner[i] is the generation whose file holds block i.
	Owner []uint8
}

// NewFull describes a fresh full image: every block in generation 0.
func NewFull(memSize uint64, blockSize uint32) (*Header, error) {
	h := &Header{BlockSize: blockSize, MemSize: memSize, Gens: 1}
	if err := h.checkGeometry(); err != nil {
		return nil, err
	}
	h.Owner = make([]uint8, memSize/uint64(blockSize))
	return h, nil
}

func (h *Header) checkGeometry() error {
	bs := h.BlockSize
	if bs < 512 || bs > 1<<20 || bs&(bs-1) != 0 {
		return fmt.Errorf("block size %d: want a power of two from 512 to 1 MiB", bs)
	}
	if h.MemSize == 0 || h.MemSize%uint64(bs) != 0 {
		return fmt.Errorf("memory size %d: want a non-zero multiple of the block size %d", h.MemSize, bs)
	}
	if h.MemSize/uint64(bs) > 1<<32 {
		return fmt.Errorf("memory size %d: too many blocks", h.MemSize)
	}
	return nil
}

// Blocks is the number of blocks.
func (h *Header) Blocks() int { return len(h.Owner) }

// NeedsCollapse reports whether another generation would exceed the bound.
func (h *Header) NeedsCollapse() bool { return h.Gens >= MaxGenerations }

// AddGeneration records a new generation holding the dirty blocks and
// returns its number. The caller collapses first when NeedsCollapse.
func (h *Header) AddGeneration(dirty []int) (uint8, error) {
	if h.NeedsCollapse() {
		return 0, fmt.Errorf("the chain already has %d generations: collapse it first", h.Gens)
	}
	g := uint8(h.Gens)
	for _, b := range dirty {
		if b < 0 || b >= len(h.Owner) {
			return 0, fmt.Errorf("dirty block %d outside the %d blocks", b, len(h.Owner))
		}
	}
	for _, b := range dirty {
		h.Owner[b] = g
	}
	h.Gens++
	return g, nil
}

// Collapsed is the header of the chain once collapsed into one image.
func (h *Header) Collapsed() *Header {
	return &Header{BlockSize: h.BlockSize, MemSize: h.MemSize, Gens: 1, Owner: make([]uint8, len(h.Owner))}
}

// Marshal encodes the header.
func (h *Header) Marshal() []byte {
	b := make([]byte, fixedSize, fixedSize+len(h.Owner)+4)
	copy(b, magic[:])
	binary.LittleEndian.PutUint32(b[8:], Version)
	binary.LittleEndian.PutUint32(b[12:], h.BlockSize)
	binary.LittleEndian.PutUint64(b[16:], h.MemSize)
	binary.LittleEndian.PutUint32(b[24:], h.Gens)
	b = append(b, h.Owner...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// Unmarshal decodes and validates a header. A truncated, corrupt or
// unknown-version header is refused with an error saying which.
func Unmarshal(b []byte) (*Header, error) {
	if len(b) < fixedSize+4 {
		return nil, fmt.Errorf("%w: truncated: %d bytes, the fixed part alone is %d", ErrCorrupt, len(b), fixedSize+4)
	}
	if [8]byte(b[:8]) != magic {
		return nil, fmt.Errorf("%w: not a Wrenn memory header (bad magic)", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != Version {
		return nil, fmt.Errorf("%w: format version %d; this build reads version %d", ErrCorrupt, v, Version)
	}
	h := &Header{
		BlockSize: binary.LittleEndian.Uint32(b[12:]),
		MemSize:   binary.LittleEndian.Uint64(b[16:]),
		Gens:      binary.LittleEndian.Uint32(b[24:]),
	}
	if err := h.checkGeometry(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if binary.LittleEndian.Uint32(b[28:]) != 0 {
		return nil, fmt.Errorf("%w: reserved field set", ErrCorrupt)
	}
	n := h.MemSize / uint64(h.BlockSize)
	if uint64(len(b)) != fixedSize+n+4 {
		if uint64(len(b)) < fixedSize+n+4 {
			return nil, fmt.Errorf("%w: truncated: %d bytes, want %d for %d blocks", ErrCorrupt, len(b), fixedSize+n+4, n)
		}
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, uint64(len(b))-(fixedSize+n+4))
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	if h.Gens == 0 || h.Gens > MaxGenerations {
		return nil, fmt.Errorf("%w: %d generations (1 to %d allowed)", ErrCorrupt, h.Gens, MaxGenerations)
	}
	h.Owner = append([]uint8(nil), body[fixedSize:]...)
	for i, g := range h.Owner {
		if uint32(g) >= h.Gens {
			return nil, fmt.Errorf("%w: block %d in generation %d of %d", ErrCorrupt, i, g, h.Gens)
		}
	}
	return h, nil
}

// Package uffd is the agent's userfaultfd page server for Firecracker's
// snapshot restore with a Uffd memory backend: Firecracker connects to its
// Unix socket and sends the guest memory regions (JSON) with the
// userfaultfd (SCM_RIGHTS); the server then answers each missing-page
// fault with UFFDIO_COPY from the snapshot's memory file, zero-fills pages
// the guest gave back (UFFD_EVENT_REMOVE), copies the rest in the
// background between faults, and stops when the VM goes away.
package uffd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Region is one guest memory region as Firecracker describes it.
type Region struct {
	BaseHostVirtAddr uint64 `json:"base_host_virt_addr"`
	Size             uint64 `json:"size"`
	// Offset of the region in the memory file.
	Offset   uint64 `json:"offset"`
	PageSize uint64 `json:"page_size"`
	// PageSizeKiB is the older releases' spelling of PageSize.
	PageSizeKiB uint64 `json:"page_size_kib,omitempty"`
}

// Stats count what the server did.
type Stats struct {
	Faults, Prefetched, Zeroed, Removed atomic.Int64
}

// Memory is where pages come from: one memory file (FileMemory) or a
// generational chain (memgen.Mapped).
type Memory interface {
	Size() uint64
	// Page returns the content of [off, off+size); it stays valid while
	// the memory is open.
	Page(off, size uint64) ([]byte, error)
	Close() error
}

// Server serves one VM's page faults.
type Server struct {
	ln    *net.UnixListener
	path  string
	mem   Memory
	log   *slog.Logger
	Stats Stats
	// Prefetch copies pages nobody asked for yet, between faults.
	Prefetch bool
}

// FileMemory is one memory file, mapped read-only.
type FileMemory []byte

// OpenFile maps a memory file.
func OpenFile(path string) (FileMemory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() == 0 {
		return nil, fmt.Errorf("memory file %s is empty", path)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", path, err)
	}
	return FileMemory(mem), nil
}

func (m FileMemory) Size() uint64 { return uint64(len(m)) }

func (m FileMemory) Page(off, size uint64) ([]byte, error) {
	if off+size > uint64(len(m)) || off+size < off {
		return nil, fmt.Errorf("page [%d, +%d) outside the %d-byte memory", off, size, len(m))
	}
	return m[off : off+size], nil
}

func (m FileMemory) Close() error { return unix.Munmap(m) }

// Listen listens on socketPath for the VM whose memory is mem; the server
// owns mem from then on.
func Listen(socketPath string, mem Memory, log *slog.Logger) (*Server, error) {
	_ = os.Remove(socketPath)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socketPath, Net: "unix"})
	if err != nil {
		mem.Close()
		return nil, err
	}
	return &Server{ln: ln, path: socketPath, mem: mem, log: log, Prefetch: true}, nil
}

// Close stops listening and releases the memory; call it after Serve
// returned.
func (s *Server) Close() error {
	err := s.ln.Close()
	_ = os.Remove(s.path)
	if s.mem != nil {
		err = errors.Join(err, s.mem.Close())
		s.mem = nil
	}
	return err
}

// Serve waits for the VM's handshake and serves its faults until the VM
// goes away (its socket closes, or its memory does) or ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.ln.SetDeadline(aLongTimeAgo) })
	conn, err := s.ln.AcceptUnix()
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("accept the VM's connection: %w", err)
	}
	defer conn.Close()
	regions, fd, err := receiveHandshake(conn)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := s.checkRegions(regions); err != nil {
		return err
	}
	return s.loop(ctx, conn, fd, regions)
}

// aLongTimeAgo, as a deadline, makes a blocked Accept return at once.
var aLongTimeAgo = time.Unix(1, 0)

func receiveHandshake(conn *net.UnixConn) ([]Region, int, error) {
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, -1, fmt.Errorf("read the VM's handshake: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, -1, fmt.Errorf("handshake: %w", err)
	}
	fd := -1
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, f := range fds {
			if fd < 0 {
				fd = f
			} else {
				unix.Close(f)
			}
		}
	}
	if fd < 0 {
		return nil, -1, errors.New("handshake carried no userfaultfd (SCM_RIGHTS)")
	}
	var regions []Region
	if err := json.Unmarshal(buf[:n], &regions); err != nil {
		unix.Close(fd)
		return nil, -1, fmt.Errorf("handshake regions: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, -1, err
	}
	return regions, fd, nil
}

func (s *Server) checkRegions(regions []Region) error {
	if len(regions) == 0 {
		return errors.New("handshake has no memory regions")
	}
	for i := range regions {
		r := &regions[i]
		if r.PageSize == 0 {
			r.PageSize = r.PageSizeKiB << 10
		}
		if r.PageSize == 0 || r.PageSize&(r.PageSize-1) != 0 || r.Size%r.PageSize != 0 || r.BaseHostVirtAddr%r.PageSize != 0 {
			return fmt.Errorf("region %d: page size %d does not fit base %#x and size %d", i, r.PageSize, r.BaseHostVirtAddr, r.Size)
		}
		if r.Offset+r.Size > s.mem.Size() || r.Offset+r.Size < r.Offset {
			return fmt.Errorf("region %d (offset %d, size %d) lies beyond the %d-byte memory", i, r.Offset, r.Size, s.mem.Size())
		}
	}
	return nil
}

// pageState tracks one region's pages: populated (by fault or prefetch)
// or removed (the guest gave it back; it reads as zeros from then on).
type pageState struct {
	Region
	done    []bool
	removed []bool
	next    int // prefetch cursor
}

func (s *Server) loop(ctx context.Context, conn *net.UnixConn, fd int, regions []Region) error {
	states := make([]*pageState, len(regions))
	for i, r := range regions {
		n := int(r.Size / r.PageSize)
		states[i] = &pageState{Region: r, done: make([]bool, n), removed: make([]bool, n)}
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var connFD int
	_ = raw.Control(func(f uintptr) { connFD = int(f) })
	// ctx ends the loop through a pipe the poll watches.
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return err
	}
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])
	stop := context.AfterFunc(ctx, func() { unix.Write(pipe[1], []byte{0}) })
	defer stop()

	buf := make([]byte, msgSize*64)
	for {
		timeout := -1
		if s.Prefetch && s.prefetchLeft(states) {
			timeout = 0
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(connFD), Events: unix.POLLIN}, {Fd: int32(pipe[0]), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, timeout); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll: %w", err)
		}
		if fds[2].Revents != 0 {
			return nil
		}
		if fds[1].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLIN) != 0 {
			// The VM closed its end: it has exited.
			return nil
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			gone, err := s.drain(fd, buf, states)
			if err != nil || gone {
				return err
			}
			continue
		}
		if fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
			return nil
		}
		if timeout == 0 {
			if gone, err := s.prefetchOne(fd, states); err != nil || gone {
				return err
			}
		}
	}
}

// drain handles every queued event. gone reports that the VM's memory
// no longer exists.
func (s *Server) drain(fd int, buf []byte, states []*pageState) (gone bool, err error) {
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read userfaultfd: %w", err)
		}
		if n == 0 {
			return true, nil
		}
		for off := 0; off+msgSize <= n; off += msgSize {
			m := (*msg)(unsafe.Pointer(&buf[off]))
			switch m.Event {
			case eventPagefault:
				if gone, err := s.fault(fd, m.Arg1, states); err != nil || gone {
					return gone, err
				}
			case eventRemove, eventUnmap:
				s.remove(m.Arg0, m.Arg1, states)
			}
		}
	}
}

func find(addr uint64, states []*pageState) (*pageState, int) {
	for _, st := range states {
		if addr >= st.BaseHostVirtAddr && addr < st.BaseHostVirtAddr+st.Size {
			return st, int((addr - st.BaseHostVirtAddr) / st.PageSize)
		}
	}
	return nil, 0
}

func (s *Server) fault(fd int, addr uint64, states []*pageState) (bool, error) {
	st, page := find(addr, states)
	if st == nil {
		return false, fmt.Errorf("fault at %#x outside every region", addr)
	}
	s.Stats.Faults.Add(1)
	if st.removed[page] {
		return s.zero(fd, st, page)
	}
	return s.copyPage(fd, st, page, false)
}

// copyPage fills page from the memory file. A page already there (the
// prefetcher or another fault won) only needs its waiters woken.
func (s *Server) copyPage(fd int, st *pageState, page int, prefetch bool) (bool, error) {
	dst := st.BaseHostVirtAddr + uint64(page)*st.PageSize
	src, err := s.mem.Page(st.Offset+uint64(page)*st.PageSize, st.PageSize)
	if err != nil {
		return false, err
	}
	c := uffdioCopy{Dst: dst, Src: uint64(uintptr(unsafe.Pointer(&src[0]))), Len: st.PageSize}
	if prefetch {
		c.Mode = copyModeDontWake
	}
	for {
		err := ioctl(fd, ioctlCopy, unsafe.Pointer(&c))
		switch {
		case err == nil:
			st.done[page] = true
			return false, nil
		case errors.Is(err, unix.EEXIST):
			st.done[page] = true
			r := uffdioRange{Start: dst, Len: st.PageSize}
			_ = ioctl(fd, ioctlWake, unsafe.Pointer(&r))
			return false, nil
		case errors.Is(err, unix.EAGAIN):
			// The VM's memory map is changing (an event is queued): the
			// caller drains events first, then the page is asked for again.
			if prefetch {
				return false, nil
			}
			continue
		case errors.Is(err, unix.ESRCH), errors.Is(err, unix.ENOENT):
			return true, nil // the VM's memory is gone
		default:
			return false, fmt.Errorf("UFFDIO_COPY %#x: %w", dst, err)
		}
	}
}

func (s *Server) zero(fd int, st *pageState, page int) (bool, error) {
	z := uffdioZeropage{Range: uffdioRange{Start: st.BaseHostVirtAddr + uint64(page)*st.PageSize, Len: st.PageSize}}
	err := ioctl(fd, ioctlZeropage, unsafe.Pointer(&z))
	switch {
	case err == nil, errors.Is(err, unix.EEXIST):
		s.Stats.Zeroed.Add(1)
		st.done[page] = true
		return false, nil
	case errors.Is(err, unix.ESRCH), errors.Is(err, unix.ENOENT):
		return true, nil
	}
	return false, fmt.Errorf("UFFDIO_ZEROPAGE: %w", err)
}

// remove notes that the guest gave [start, end) back: those pages read as
// zeros from now on, and the prefetcher leaves them alone.
func (s *Server) remove(start, end uint64, states []*pageState) {
	for _, st := range states {
		lo, hi := max(start, st.BaseHostVirtAddr), min(end, st.BaseHostVirtAddr+st.Size)
		for a := lo; a < hi; a += st.PageSize {
			p := int((a - st.BaseHostVirtAddr) / st.PageSize)
			st.removed[p] = true
			st.done[p] = false
			s.Stats.Removed.Add(1)
		}
	}
}

func (s *Server) prefetchLeft(states []*pageState) bool {
	for _, st := range states {
		for st.next < len(st.done) && (st.done[st.next] || st.removed[st.next]) {
			st.next++
		}
		if st.next < len(st.done) {
			return true
		}
	}
	return false
}

func (s *Server) prefetchOne(fd int, states []*pageState) (bool, error) {
	for _, st := range states {
		if st.next < len(st.done) {
			gone, err := s.copyPage(fd, st, st.next, true)
			if err == nil && !gone && st.done[st.next] {
				s.Stats.Prefetched.Add(1)
			}
			return gone, err
		}
	}
	return false, nil
}

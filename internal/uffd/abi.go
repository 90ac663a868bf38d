package uffd

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The userfaultfd ABI (linux/userfaultfd.h); golang.org/x/sys does not
// carry it.
const (
	uffdAPI = 0xAA

	eventPagefault = 0x12
	eventRemove    = 0x15
	eventUnmap     = 0x16

	// FeatureEventRemove asks for UFFD_EVENT_REMOVE (madvise DONTNEED or
	// REMOVE on registered memory, as a balloon does).
	FeatureEventRemove = 1 << 3
	// RegisterModeMissing reports faults on pages not yet present.
	RegisterModeMissing = 1

	copyModeDontWake = 1
)

type uffdioAPI struct {
	API, Features, Ioctls uint64
}

type uffdioRange struct {
	Start, Len uint64
}

type uffdioRegister struct {
	Range  uffdioRange
	Mode   uint64
	Ioctls uint64
}

type uffdioCopy struct {
	Dst, Src, Len, Mode uint64
	Copy                int64
}

type uffdioZeropage struct {
	Range    uffdioRange
	Mode     uint64
	Zeropage int64
}

// msg is struct uffd_msg (32 bytes): an event and its argument.
type msg struct {
	Event uint8
	_     [7]uint8
	Arg0  uint64 // pagefault: flags; remove: start
	Arg1  uint64 // pagefault: address; remove: end
	Arg2  uint64
}

const msgSize = int(unsafe.Sizeof(msg{}))

func iowr(nr, size uintptr) uintptr { return 3<<30 | size<<16 | uffdAPI<<8 | nr }
func ior(nr, size uintptr) uintptr  { return 2<<30 | size<<16 | uffdAPI<<8 | nr }

var (
	ioctlRegister = iowr(0x00, unsafe.Sizeof(uffdioRegister{}))
	ioctlWake     = ior(0x02, unsafe.Sizeof(uffdioRange{}))
	ioctlCopy     = iowr(0x03, unsafe.Sizeof(uffdioCopy{}))
	ioctlZeropage = iowr(0x04, unsafe.Sizeof(uffdioZeropage{}))
	ioctlAPI      = iowr(0x3F, unsafe.Sizeof(uffdioAPI{}))
)

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// New makes a userfaultfd with the API handshake done and features
// enabled; it is what a VMM does before registering its guest memory.
func New(features uint64) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	api := uffdioAPI{API: uffdAPI, Features: features}
	if err := ioctl(int(fd), ioctlAPI, unsafe.Pointer(&api)); err != nil {
		unix.Close(int(fd))
		return -1, err
	}
	return int(fd), nil
}

// Register asks for missing-page faults on [start, start+length).
func Register(fd int, start, length uint64) error {
	r := uffdioRegister{Range: uffdioRange{Start: start, Len: length}, Mode: RegisterModeMissing}
	return ioctl(fd, ioctlRegister, unsafe.Pointer(&r))
}

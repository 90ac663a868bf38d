package filesystemsvc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"google.golang.org/protobuf/types/known/timestamppb"

	"git.omukk.dev/wrenn/sandbox/internal/envd/fsmeta"
	pb "git.omukk.dev/wrenn/sandbox/proto/envd/filesystem"
)

// Entry describes path without following a final symlink, except that a
// symlink's type and mode are its target's, as E2B's envd reports them.
func Entry(path string) (*pb.EntryInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	return entryFromInfo(path, fi)
}

func entryFromInfo(path string, fi os.FileInfo) (*pb.EntryInfo, error) {
	e := &pb.EntryInfo{
		Name:        filepath.Base(path),
		Path:        path,
		Size:        fi.Size(),
		Mode:        uint32(fi.Mode().Perm()),
		Permissions: fi.Mode().String(),
		Type:        fileType(fi.Mode()),
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.Owner = fsmeta.Owner(st.Uid)
		e.Group = fsmeta.Group(st.Gid)
	}
	if !fi.ModTime().IsZero() {
		e.ModifiedTime = timestamppb.New(fi.ModTime())
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := filepath.EvalSymlinks(path)
		if err != nil {
			target = path
			e.Type = pb.FileType_FILE_TYPE_UNSPECIFIED
			e.Mode = 0
		} else if tfi, err := os.Stat(target); err == nil {
			e.Type = fileType(tfi.Mode())
			e.Mode = uint32(tfi.Mode().Perm())
		}
		abs, err := filepath.Abs(target)
		if err == nil {
			target = abs
		}
		e.SymlinkTarget = &target
	}
	meta, err := fsmeta.Metadata(path)
	if errors.Is(err, fs.ErrPermission) {
		// A file the user may not read still has a type, size and owner.
		meta, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", path, err)
	}
	e.Metadata = meta
	return e, nil
}

func fileType(m os.FileMode) pb.FileType {
	switch {
	case m.IsRegular():
		return pb.FileType_FILE_TYPE_FILE
	case m.IsDir():
		return pb.FileType_FILE_TYPE_DIRECTORY
	case m&os.ModeSymlink != 0:
		return pb.FileType_FILE_TYPE_SYMLINK
	default:
		return pb.FileType_FILE_TYPE_UNSPECIFIED
	}
}

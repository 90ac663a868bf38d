package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/runtime"
)

// SnapshotInfo describes a snapshot template.
type SnapshotInfo struct {
	Name      string    `json:"name"`
	Template  string    `json:"template"`
	Source    string    `json:"source"`
	VCPUs     int       `json:"vcpus"`
	MemoryMiB int       `json:"memoryMiB"`
	DiskMiB   int       `json:"diskMiB"`
	Runtime   string    `json:"runtime"`
	Created   time.Time `json:"created"`
	// AccessToken is envd's token frozen in the snapshot's memory; a clone
	// presents it to replace it with its own. Only in snapshot.json (0600).
	AccessToken string `json:"accessToken,omitempty"`
	SizeBytes   int64  `json:"-"`
}

const snapshotRecord = "snapshot.json"

func (m *Manager) snapshotsDir() string           { return filepath.Join(m.cfg.StateDir, "snapshots") }
func (m *Manager) snapshotDir(name string) string { return filepath.Join(m.snapshotsDir(), name) }

func (m *Manager) snapshot(name string) (*SnapshotInfo, error) {
	if !ValidID(name) {
		return nil, fmt.Errorf("%w: snapshot name %q", ErrInvalid, name)
	}
	b, err := os.ReadFile(filepath.Join(m.snapshotDir(name), snapshotRecord))
	if err != nil {
		return nil, fmt.Errorf("%w: snapshot %s", ErrNotFound, name)
	}
	var si SnapshotInfo
	if err := json.Unmarshal(b, &si); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", name, err)
	}
	if si.Runtime != m.cfg.Driver.Name() {
		return nil, fmt.Errorf("%w: snapshot %s was made by the %s runtime; this agent runs %s", ErrInvalid, name, si.Runtime, m.cfg.Driver.Name())
	}
	si.SizeBytes = allocated(m.snapshotDir(name))
	return &si, nil
}

// CreateSnapshot freezes a sandbox into a named template. A running sandbox
// is paused for the copy and resumed after it, failed copy or not.
func (m *Manager) CreateSnapshot(ctx context.Context, id, name string) (*SnapshotInfo, error) {
	if !ValidID(name) {
		return nil, fmt.Errorf("%w: snapshot name %q must be 1-63 lowercase letters, digits or dashes", ErrInvalid, name)
	}
	saver := m.caps.Snapshotter
	if saver == nil {
		return nil, fmt.Errorf("%w: the %s runtime cannot make snapshots", ErrUnsupported, m.cfg.Driver.Name())
	}
	s, err := m.get(id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	final := m.snapshotDir(name)
	if _, err := os.Stat(final); err == nil {
		return nil, fmt.Errorf("%w: snapshot %s", ErrAlreadyExists, name)
	}
	wasRunning := s.Info().State == Running
	if wasRunning {
		if _, err := m.pauseLocked(ctx, s); err != nil {
			return nil, err
		}
	} else if st := s.Info().State; st != Paused {
		return nil, fmt.Errorf("%w: sandbox %s is %s", ErrNotRunning, id, st)
	}
	si, err := m.saveSnapshot(ctx, saver, s, name)
	if wasRunning {
		if _, rerr := m.resumeLocked(context.Background(), s, 0); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	if err != nil {
		return nil, err
	}
	m.log.Info("snapshot created", "snapshot", name, "sandbox", id, "bytes", si.SizeBytes)
	return si, nil
}

func (m *Manager) saveSnapshot(ctx context.Context, saver runtime.Snapshotter, s *Sandbox, name string) (*SnapshotInfo, error) {
	if err := os.MkdirAll(m.snapshotsDir(), 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(m.snapshotsDir(), "."+name+".part-")
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			os.RemoveAll(tmp)
		}
	}()
	if err := saver.SaveSnapshot(ctx, s.dir, tmp); err != nil {
		if errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "No space left") {
			return nil, fmt.Errorf("%w: not enough disk space for snapshot %s: %v", ErrNoCapacity, name, err)
		}
		return nil, fmt.Errorf("snapshot %s: %w", name, err)
	}
	r := s.info.Request
	si := &SnapshotInfo{Name: name, Template: r.Template, Source: r.ID, VCPUs: r.VCPUs, MemoryMiB: r.MemoryMiB, DiskMiB: r.DiskMiB, Runtime: m.cfg.Driver.Name(), Created: time.Now().UTC(), AccessToken: r.AccessToken}
	b, _ := json.Marshal(si)
	if err := os.WriteFile(filepath.Join(tmp, snapshotRecord), b, 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, m.snapshotDir(name)); err != nil {
		return nil, err
	}
	committed = true
	si.SizeBytes = allocated(m.snapshotDir(name))
	return si, nil
}

// DeleteSnapshot removes a template no sandbox depends on.
func (m *Manager) DeleteSnapshot(name string) error {
	if _, err := m.snapshot(name); err != nil {
		return err
	}
	for _, i := range m.List() {
		if i.Snapshot == name && i.State != Stopped {
			return fmt.Errorf("%w: sandbox %s was started from snapshot %s and still uses it", ErrConflict, i.ID, name)
		}
	}
	return os.RemoveAll(m.snapshotDir(name))
}

// ListSnapshots lists the templates on this host.
func (m *Manager) ListSnapshots() []*SnapshotInfo {
	entries, _ := os.ReadDir(m.snapshotsDir())
	var out []*SnapshotInfo
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if si, err := m.snapshot(e.Name()); err == nil {
			out = append(out, si)
		}
	}
	slices.SortFunc(out, func(a, b *SnapshotInfo) int { return a.Created.Compare(b.Created) })
	return out
}

// allocated is the disk space used under dir.
func allocated(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					n += st.Blocks * 512
				}
			}
		}
		return nil
	})
	return n
}

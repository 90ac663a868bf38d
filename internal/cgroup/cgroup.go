// Package cgroup enforces a sandbox's vCPU and memory limits on the host by
// placing its VMM process in a cgroup of its own, on cgroup v2 or, where the
// host still mounts the v1 hierarchies, on the cpu and memory controllers.
package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const root = "/sys/fs/cgroup"

// Group is one sandbox's cgroup (one directory per controller on v1).
type Group struct {
	dirs []string
	v2   bool
}

// Limits for a group.
type Limits struct {
	CPUs        int   // whole CPUs of CPU time per period
	MemoryBytes int64 // hard limit
}

func isV2() bool {
	_, err := os.Stat(filepath.Join(root, "cgroup.controllers"))
	return err == nil
}

// Create makes wrenn/<name> with the limits applied.
func Create(name string, l Limits) (*Group, error) {
	g := &Group{v2: isV2()}
	period := 100000
	quota := strconv.Itoa(l.CPUs*period) + " " + strconv.Itoa(period)
	mem := strconv.FormatInt(l.MemoryBytes, 10)
	var files map[string]map[string]string
	if g.v2 {
		parent := filepath.Join(root, "wrenn")
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup %s: %w", parent, err)
		}
		_ = os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+cpu +memory"), 0o644)
		if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+cpu +memory"), 0o644); err != nil {
			return nil, fmt.Errorf("enable cpu and memory controllers in %s: %w", parent, err)
		}
		files = map[string]map[string]string{filepath.Join(parent, name): {"cpu.max": quota, "memory.max": mem}}
	} else {
		quotaUs := strconv.Itoa(l.CPUs * period)
		files = map[string]map[string]string{
			filepath.Join(root, "cpu", "wrenn", name):    {"cpu.cfs_period_us": strconv.Itoa(period), "cpu.cfs_quota_us": quotaUs},
			filepath.Join(root, "memory", "wrenn", name): {"memory.limit_in_bytes": mem},
		}
	}
	for dir, settings := range files {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			g.Remove()
			return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		g.dirs = append(g.dirs, dir)
		for file, val := range settings {
			if err := os.WriteFile(filepath.Join(dir, file), []byte(val), 0o644); err != nil {
				g.Remove()
				return nil, fmt.Errorf("cgroup %s: set %s to %s: %w", dir, file, val, err)
			}
		}
	}
	return g, nil
}

// Open finds an existing group (after an agent restart).
func Open(name string) *Group {
	g := &Group{v2: isV2()}
	if g.v2 {
		g.dirs = []string{filepath.Join(root, "wrenn", name)}
	} else {
		g.dirs = []string{filepath.Join(root, "cpu", "wrenn", name), filepath.Join(root, "memory", "wrenn", name)}
	}
	return g
}

// populated reports whether a process lives in dir or below it.
func populated(dir string) bool {
	if b, err := os.ReadFile(filepath.Join(dir, "cgroup.events")); err == nil {
		return strings.Contains(string(b), "populated 1")
	}
	found := false
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "cgroup.procs" {
			if b, _ := os.ReadFile(p); len(strings.TrimSpace(string(b))) > 0 {
				found = true
				return filepath.SkipAll
			}
		}
		return nil
	})
	return found
}

// Add moves a process into the group.
func (g *Group) Add(pid int) error {
	for _, d := range g.dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("move %d into %s: %w", pid, d, err)
		}
	}
	return nil
}

// MemoryCurrent is the group's memory use in bytes.
func (g *Group) MemoryCurrent() (uint64, error) {
	file := "memory.current"
	dir := g.dirs[0]
	if !g.v2 {
		file, dir = "memory.usage_in_bytes", g.dirs[1]
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// Remove deletes the group; its processes must have exited. It retries
// briefly, since the kernel frees a group a moment after its last process.
func (g *Group) Remove() error {
	var errs []error
	for _, d := range g.dirs {
		var err error
		for range 50 {
			err = os.Remove(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// SandboxName is the group every runtime gives a sandbox's guest.
func SandboxName(sandboxID string) string { return "sb-" + sandboxID }

// RemoveIdle removes those of the named groups that exist and hold no
// process, for reclaiming after a crash. The agent names only its own
// sandboxes' groups: another agent on the same host may have made an
// empty group a moment ago, and a group with processes belongs to a live
// guest.
func RemoveIdle(names ...string) error {
	dir := filepath.Join(root, "wrenn")
	if !isV2() {
		dir = filepath.Join(root, "memory", "wrenn")
	}
	var errs []error
	for _, name := range names {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.IsDir() && !populated(filepath.Join(dir, name)) {
			errs = append(errs, Open(name).Remove())
		}
	}
	return errors.Join(errs...)
}

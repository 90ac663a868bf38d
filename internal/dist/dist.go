// Package dist builds Wrenn's release artifacts: static binaries for each
// architecture (a tarball per architecture), Debian packages made with
// nfpm (wrenn-control-plane, wrenn-host-agent, wrenn, wrenn-runsc) with
// their systemd units, configuration files and maintainer scripts, and a
// SHA256SUMS beside them. `make dist` runs it through cmd/wrenn-dist.
package dist

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
)

//go:embed files
var packaging embed.FS

// Module is the Go module the binaries are built from.
const Module = "git.omukk.dev/wrenn/sandbox"

// Binaries are the programs every architecture gets (cmd/<name>).
var Binaries = []string{"control-plane", "host-agent", "wrenn", "envd", "wrenn-init"}

// Arches are the architectures `make dist` builds for.
var Arches = []string{"amd64", "arm64"}

// Package names.
const (
	PkgControlPlane = "wrenn-control-plane"
	PkgHostAgent    = "wrenn-host-agent"
	PkgCLI          = "wrenn"
	PkgRunsc        = "wrenn-runsc"
)

// Installed paths the units, configuration files and docs refer to.
const (
	ControlPlaneBin    = "/usr/bin/wrenn-control-plane"
	HostAgentBin       = "/usr/bin/wrenn-host-agent"
	CLIBin             = "/usr/bin/wrenn"
	LibDir             = "/usr/lib/wrenn"
	RunscPath          = LibDir + "/runsc"
	ControlPlaneConfig = "/etc/wrenn/control-plane.toml"
	HostAgentConfig    = "/etc/wrenn/host-agent.toml"
	UnitDir            = "/lib/systemd/system"
)

// Options for Build.
type Options struct {
	// Root is the repository (binaries are built from it; LICENSE and
	// NOTICE go into every package).
	Root string
	// Out receives the artifacts and SHA256SUMS.
	Out string
	// Version is the packages' Debian version.
	Version string
	// Arches to build (default Arches).
	Arches []string
	// Runsc maps an architecture to a runsc binary already built from
	// RunscVersion (scripts/setup's); the others are built (minutes).
	Runsc map[string]string
	// RunscVersion is gVisor's pinned module version (scripts/runsc.version).
	RunscVersion string
	// MTime is every packaged file's time (default: now); the commit's
	// time makes the packages reproducible.
	MTime time.Time
	// Log receives progress.
	Log io.Writer
}

// Artifact is one file Build wrote.
type Artifact struct {
	Path string
	Size int64
	Took time.Duration
}

// Build writes every artifact for every architecture and SHA256SUMS.
func Build(ctx context.Context, o Options) ([]Artifact, error) {
	if o.Version == "" || o.RunscVersion == "" {
		return nil, fmt.Errorf("dist: a version and gVisor's pinned version are required")
	}
	if len(o.Arches) == 0 {
		o.Arches = Arches
	}
	if o.MTime.IsZero() {
		o.MTime = time.Now()
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "wrenn-dist-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := writePackaging(filepath.Join(work, "files")); err != nil {
		return nil, err
	}
	var out []Artifact
	for _, arch := range o.Arches {
		bin := filepath.Join(work, arch)
		start := time.Now()
		for _, name := range Binaries {
			fmt.Fprintf(o.Log, "==> go build %s (linux/%s)\n", name, arch)
			if err := goBuild(ctx, o.Root, arch, "./cmd/"+name, filepath.Join(bin, name)); err != nil {
				return nil, err
			}
		}
		tarball := filepath.Join(o.Out, fmt.Sprintf("wrenn_%s_linux_%s.tar.gz", o.Version, arch))
		if err := writeTarball(tarball, bin, o.Root, fmt.Sprintf("wrenn_%s_linux_%s", o.Version, arch)); err != nil {
			return nil, err
		}
		out = append(out, artifact(tarball, time.Since(start)))

		runsc := o.Runsc[arch]
		if runsc == "" {
			fmt.Fprintf(o.Log, "==> building runsc %s (linux/%s; takes minutes)\n", o.RunscVersion, arch)
			start := time.Now()
			if runsc, err = BuildRunsc(ctx, o.RunscVersion, arch, filepath.Join(work, "runsc-"+arch)); err != nil {
				return nil, err
			}
			fmt.Fprintf(o.Log, "    runsc built in %s\n", time.Since(start).Round(time.Second))
		}
		for _, p := range packages(o, arch, bin, runsc, filepath.Join(work, "files")) {
			start := time.Now()
			path, err := writeDeb(p, o.Out)
			if err != nil {
				return nil, fmt.Errorf("package %s (%s): %w", p.Name, arch, err)
			}
			fmt.Fprintf(o.Log, "==> %s\n", filepath.Base(path))
			out = append(out, artifact(path, time.Since(start)))
		}
	}
	sums := filepath.Join(o.Out, "SHA256SUMS")
	if err := writeSums(sums, out); err != nil {
		return nil, err
	}
	return append(out, artifact(sums, 0)), nil
}

func artifact(path string, took time.Duration) Artifact {
	a := Artifact{Path: path, Took: took}
	if fi, err := os.Stat(path); err == nil {
		a.Size = fi.Size()
	}
	return a
}

// writePackaging copies the embedded units, configuration files and
// scripts to dir, where nfpm reads them; a script's @UNIT@ and @PURGE@
// are filled in per package.
func writePackaging(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	entries, err := packaging.ReadDir("files")
	if err != nil {
		return err
	}
	for _, e := range entries {
		b, err := packaging.ReadFile("files/" + e.Name())
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	for _, s := range []struct{ pkg, unit, purge string }{
		{PkgControlPlane, PkgControlPlane + ".service", "rm -f /etc/wrenn/control-plane.secret"},
		{PkgHostAgent, PkgHostAgent + ".service", ":"},
	} {
		for _, script := range []string{"prerm", "postrm"} {
			b, err := packaging.ReadFile("files/" + script)
			if err != nil {
				return err
			}
			text := strings.NewReplacer("@UNIT@", s.unit, "@PURGE@", s.purge).Replace(string(b))
			if err := os.WriteFile(filepath.Join(dir, s.pkg+"."+script), []byte(text), 0o755); err != nil {
				return err
			}
		}
	}
	return nil
}

// PackagingFile is one of the embedded units, configuration files or
// scripts, as shipped (tests read them).
func PackagingFile(name string) ([]byte, error) { return packaging.ReadFile("files/" + name) }

func goBuild(ctx context.Context, root, arch, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for linux/%s: %v\n%s", pkg, arch, err, b)
	}
	return nil
}

// BuildRunsc builds gVisor's runsc at version for arch, statically (a cgo
// build fails in its own chroot), into dir, the way scripts/setup does.
// The module cache is shared; the binary lands in dir.
func BuildRunsc(ctx context.Context, version, arch, dir string) (string, error) {
	gopath := filepath.Join(dir, "gopath")
	modcache, err := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", "install", "gvisor.dev/gvisor/runsc@"+version)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOPATH="+gopath,
		"GOMODCACHE="+strings.TrimSpace(string(modcache)), "GOBIN=", "GOFLAGS=-trimpath")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build runsc %s for linux/%s: %v\n%s", version, arch, err, b)
	}
	// go install puts a cross-compiled binary under bin/<goos>_<goarch>.
	for _, p := range []string{filepath.Join(gopath, "bin", "runsc"), filepath.Join(gopath, "bin", "linux_"+arch, "runsc")} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("runsc for linux/%s: go install left no binary in %s", arch, filepath.Join(gopath, "bin"))
}

func packages(o Options, arch, bin, runsc, pkgFiles string) []*nfpm.Info {
	common := func(name, desc string) *nfpm.Info {
		return &nfpm.Info{
			Name: name, Arch: arch, Platform: "linux", Version: o.Version, VersionSchema: "none",
			Section: "admin", Priority: "optional", Maintainer: "Wrenn maintainers <maintainers@wrenn.invalid>",
			Description: desc, License: "Apache-2.0", Homepage: "https://" + Module, MTime: o.MTime,
			Overridables: nfpm.Overridables{Contents: docs(o.Root, name)},
		}
	}
	add := func(i *nfpm.Info, c ...*files.Content) { i.Contents = append(i.Contents, c...) }
	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode}}
	}
	conffile := func(src, dst string) *files.Content {
		return &files.Content{Source: src, Destination: dst, Type: files.TypeConfigNoReplace, FileInfo: &files.ContentFileInfo{Mode: 0o640}}
	}
	dir := func(dst string, mode os.FileMode) *files.Content {
		return &files.Content{Destination: dst, Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: mode}}
	}
	scripts := func(i *nfpm.Info, name, postinst string) {
		i.Scripts = nfpm.Scripts{PostInstall: filepath.Join(pkgFiles, postinst),
			PreRemove: filepath.Join(pkgFiles, name+".prerm"), PostRemove: filepath.Join(pkgFiles, name+".postrm")}
	}

	cp := common(PkgControlPlane, "Wrenn control plane: API, E2B-compatible API and sandbox proxy\n"+
		" Wrenn runs sandboxes for AI agents on your own hosts. The control plane\n"+
		" keeps its state in PostgreSQL and runs as the unprivileged user wrenn.")
	cp.Depends = []string{"adduser"}
	cp.Suggests = []string{"postgresql"}
	add(cp, file(filepath.Join(bin, "control-plane"), ControlPlaneBin, 0o755),
		file(filepath.Join(pkgFiles, PkgControlPlane+".service"), UnitDir+"/"+PkgControlPlane+".service", 0o644),
		conffile(filepath.Join(pkgFiles, "control-plane.toml"), ControlPlaneConfig),
		dir("/etc/wrenn/tls", 0o750))
	scripts(cp, PkgControlPlane, "control-plane.postinst")

	runtimes := " MicroVMs under QEMU or Firecracker, or gVisor, with pause and resume.\n"
	if arch != "amd64" {
		runtimes = " gVisor sandboxes with pause and resume (the microVM drivers are x86_64-only).\n"
	}
	agent := common(PkgHostAgent, "Wrenn host agent: runs sandboxes on this host\n"+runtimes+
		" Runs as root; registers with a Wrenn control plane.")
	agent.Depends = []string{"iptables", "iproute2", "e2fsprogs", PkgCLI}
	if arch == "amd64" {
		agent.Depends = append(agent.Depends, "qemu-system-x86", "qemu-utils")
		agent.Recommends = []string{PkgRunsc}
	} else {
		// The QEMU driver runs x86_64 microvm guests only: elsewhere the
		// agent runs gVisor.
		agent.Depends = append(agent.Depends, PkgRunsc)
	}
	add(agent, file(filepath.Join(bin, "host-agent"), HostAgentBin, 0o755),
		file(filepath.Join(pkgFiles, PkgHostAgent+".service"), UnitDir+"/"+PkgHostAgent+".service", 0o644),
		conffile(filepath.Join(pkgFiles, "host-agent.toml"), HostAgentConfig),
		dir("/var/lib/wrenn", 0o700), dir("/var/lib/wrenn/images", 0o755))
	scripts(agent, PkgHostAgent, "host-agent.postinst")

	cli := common(PkgCLI, "Wrenn command-line tool, guest image builder and in-guest daemons\n"+
		" wrenn image build makes the guest images a host agent runs (envd and\n"+
		" wrenn-init, shipped in "+LibDir+", go into them); wrenn dev runs the\n"+
		" whole platform on one machine for development.")
	kernel := "linux-image-" + arch
	cli.Recommends = []string{kernel, "busybox-static", "bash-static", "e2fsprogs", "cpio", "xz-utils"}
	cli.Suggests = []string{"debootstrap"}
	add(cli, file(filepath.Join(bin, "wrenn"), CLIBin, 0o755),
		file(filepath.Join(bin, "envd"), LibDir+"/envd", 0o755),
		file(filepath.Join(bin, "wrenn-init"), LibDir+"/wrenn-init", 0o755))

	rs := common(PkgRunsc, "gVisor's runsc, built for Wrenn's host agent\n"+
		" The gVisor version Wrenn is tested with ("+o.RunscVersion+"), built\n"+
		" statically, in "+RunscPath+" so it does not clash with another runsc.")
	rs.Version = RunscDebVersion(o.RunscVersion)
	rs.License = "Apache-2.0 (gVisor)"
	add(rs, file(runsc, RunscPath, 0o755))
	return []*nfpm.Info{cp, agent, cli, rs}
}

// RunscDebVersion turns gVisor's Go pseudo-version
// (v0.0.0-20260905035102-160fafc42237) into a Debian version that sorts
// by date (0.0~git20260905035102.160fafc42237).
func RunscDebVersion(v string) string {
	parts := strings.Split(strings.TrimPrefix(v, "v"), "-")
	if len(parts) == 3 {
		return "0.0~git" + parts[1] + "." + parts[2]
	}
	return strings.ReplaceAll(strings.TrimPrefix(v, "v"), "-", "~")
}

// docs are the license files Debian expects of every package.
func docs(root, name string) files.Contents {
	return files.Contents{
		{Source: filepath.Join(root, "LICENSE"), Destination: "/usr/share/doc/" + name + "/copyright", FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		{Source: filepath.Join(root, "NOTICE"), Destination: "/usr/share/doc/" + name + "/NOTICE", FileInfo: &files.ContentFileInfo{Mode: 0o644}},
	}
}

func writeDeb(info *nfpm.Info, outDir string) (string, error) {
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", err
	}
	packager, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	path := filepath.Join(outDir, packager.ConventionalFileName(info))
	f, err := os.Create(path + ".part")
	if err != nil {
		return "", err
	}
	defer os.Remove(path + ".part")
	if err := packager.Package(info, f); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(path+".part", path)
}

// writeTarball packs the static binaries, LICENSE and NOTICE under one
// top-level directory.
func writeTarball(path, binDir, root, top string) error {
	f, err := os.Create(path + ".part")
	if err != nil {
		return err
	}
	defer os.Remove(path + ".part")
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	var srcs []string
	for _, b := range Binaries {
		srcs = append(srcs, filepath.Join(binDir, b))
	}
	srcs = append(srcs, filepath.Join(root, "LICENSE"), filepath.Join(root, "NOTICE"))
	for _, src := range srcs {
		if err := addToTar(tw, src, top+"/"+filepath.Base(src)); err != nil {
			f.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := gz.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".part", path)
}

func addToTar(tw *tar.Writer, src, name string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	hdr, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return err
	}
	hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = name, 0, 0, "root", "root"
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// writeSums writes sha256sum -c's format for the artifacts.
func writeSums(path string, arts []Artifact) error {
	var lines []string
	for _, a := range arts {
		f, err := os.Open(a.Path)
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		lines = append(lines, hex.EncodeToString(h.Sum(nil))+"  "+filepath.Base(a.Path))
	}
	slices.SortFunc(lines, func(a, b string) int { return strings.Compare(a[66:], b[66:]) })
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

package sdk

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// Templates: a team's own sandbox images, built by the control plane from
// a base and steps (Wrenn's /v1 API only; E2B's Template SDK speaks a
// protocol of its own).

// Build step types.
const (
	StepRun     = "RUN"     // Args: command, user?
	StepCopy    = "COPY"    // Args: source in the build context, destination, user?, mode?
	StepEnv     = "ENV"     // Args: name, value pairs
	StepWorkdir = "WORKDIR" // Args: directory
	StepUser    = "USER"    // Args: user name
)

// TemplateStep is one build step. A COPY's FilesHash names its uploaded
// files; BuildTemplate fills it in from the build context.
type TemplateStep struct {
	Type      string   `json:"type"`
	Args      []string `json:"args"`
	FilesHash string   `json:"files_hash,omitempty"`
	// Force runs the step and every one after it even when cached.
	Force bool `json:"force,omitempty"`
}

// RegistryAuth is a user name and password (or token) for a registry.
type RegistryAuth struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// TemplateSpec is a build: the body of POST /v1/templates.
type TemplateSpec struct {
	Name      string   `json:"name"`
	Tags      []string `json:"tags,omitempty"`
	VCPUs     int      `json:"vcpus,omitempty"`
	MemoryMiB int      `json:"memory_mib,omitempty"`
	// FromTemplate is the base: an image (minimal, base) or a template
	// (name or name:tag). FromImage is the other kind of base: an OCI
	// image in a registry, with FromImageRegistry's credentials if the
	// registry wants them (sent for the pull only; never stored).
	FromTemplate      string         `json:"from_template,omitempty"`
	FromImage         string         `json:"from_image,omitempty"`
	FromImageRegistry *RegistryAuth  `json:"from_image_registry,omitempty"`
	Steps             []TemplateStep `json:"steps"`
	// StartCmd runs detached once the steps are done; the template is
	// frozen with it running after ReadyCmd succeeds.
	StartCmd string `json:"start_cmd,omitempty"`
	ReadyCmd string `json:"ready_cmd,omitempty"`
	// Force disregards the layer cache for the whole build.
	Force bool `json:"force,omitempty"`
}

// Template is an image or a built template as ListTemplates shows it.
// Images (BuiltIn) have only a name.
type Template struct {
	ID            string            `json:"id,omitempty"`
	Name          string            `json:"name"`
	BuiltIn       bool              `json:"built_in,omitempty"`
	TeamID        string            `json:"team_id"`
	Public        bool              `json:"public,omitempty"`
	LatestBuildID string            `json:"latest_build_id,omitempty"`
	Tags          map[string]string `json:"tags,omitempty"`
	CreatedAt     time.Time         `json:"created_at,omitzero"`
}

// TemplateBuild is one build of a template.
type TemplateBuild struct {
	ID         string            `json:"id"`
	TemplateID string            `json:"template_id"`
	Status     string            `json:"status"` // waiting, building, ready, error, cancelled
	Spec       json.RawMessage   `json:"spec,omitempty"`
	VCPUs      int               `json:"vcpus"`
	MemoryMiB  int               `json:"memory_mib"`
	SnapshotID string            `json:"snapshot_id,omitempty"`
	SizeBytes  int64             `json:"size_bytes,omitempty"`
	HostID     string            `json:"host_id,omitempty"`
	Envs       map[string]string `json:"envs,omitempty"`
	Workdir    string            `json:"workdir,omitempty"`
	FailedStep *int              `json:"failed_step,omitempty"`
	ExitCode   *int              `json:"exit_code,omitempty"`
	Error      string            `json:"error,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	FinishedAt *time.Time        `json:"finished_at,omitempty"`
}

// Done reports whether the build has ended (ready, error or cancelled).
func (b TemplateBuild) Done() bool { return b.Status != "waiting" && b.Status != "building" }

// BuildLogLine is one line of a build's log. Step is the step's number
// (as text), "base", "finalize" or empty.
type BuildLogLine struct {
	Seq     int       `json:"seq"`
	At      time.Time `json:"at"`
	Level   string    `json:"level"`
	Step    string    `json:"step,omitempty"`
	Message string    `json:"message"`
}

func templatePath(ref string, rest ...string) string {
	p := "/v1/templates/" + url.PathEscape(ref)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

// BuildTemplate starts a build of spec. Each COPY step without a
// FilesHash gets its files from contextDir: they are packed
// (PackTemplateFiles) and uploaded unless the team already has them. The
// build runs on the control plane; follow it with TemplateBuildLogs and
// GetTemplateBuild.
func (c *Client) BuildTemplate(ctx context.Context, spec TemplateSpec, contextDir string) (TemplateBuild, error) {
	if err := c.wrennOnly("build template"); err != nil {
		return TemplateBuild{}, err
	}
	spec.Steps = slices.Clone(spec.Steps)
	for i, st := range spec.Steps {
		if st.Type != StepCopy || st.FilesHash != "" {
			continue
		}
		if len(st.Args) == 0 {
			return TemplateBuild{}, &APIError{Op: "build template", Message: fmt.Sprintf("step %d (COPY): args are [source, destination, user?, mode?]", i+1), kind: ErrInvalid}
		}
		hash, archive, err := PackTemplateFiles(contextDir, st.Args[0])
		if err != nil {
			return TemplateBuild{}, fmt.Errorf("build template: step %d (COPY %s): %w", i+1, st.Args[0], err)
		}
		if err := c.UploadTemplateFiles(ctx, hash, archive); err != nil {
			return TemplateBuild{}, err
		}
		spec.Steps[i].FilesHash = hash
	}
	var b TemplateBuild
	_, err := c.call(ctx, "build template "+spec.Name, http.MethodPost, "/v1/templates", nil, spec, &b)
	return b, err
}

// UploadTemplateFiles stores a build-context archive (tar or tar.gz)
// under hash, unless the team has it already.
func (c *Client) UploadTemplateFiles(ctx context.Context, hash string, archive []byte) error {
	if err := c.wrennOnly("upload template files"); err != nil {
		return err
	}
	op := "upload template files " + hash
	var present struct {
		Present bool `json:"present"`
	}
	if _, err := c.call(ctx, op, http.MethodGet, "/v1/templates/files/"+url.PathEscape(hash), nil, nil, &present); err != nil || present.Present {
		return err
	}
	res, err := c.send(ctx, op, http.MethodPut, "/v1/templates/files/"+url.PathEscape(hash), nil, bytes.NewReader(archive), "application/gzip")
	if err != nil {
		return err
	}
	return res.Body.Close()
}

// ListTemplates lists the images on the hosts, the team's templates and
// the platform templates admins published.
func (c *Client) ListTemplates(ctx context.Context) ([]Template, error) {
	if err := c.wrennOnly("list templates"); err != nil {
		return nil, err
	}
	var ts []Template
	_, err := c.call(ctx, "list templates", http.MethodGet, "/v1/templates", nil, nil, &ts)
	return ts, err
}

// GetTemplate returns a built template by name or ID.
func (c *Client) GetTemplate(ctx context.Context, ref string) (Template, error) {
	if err := c.wrennOnly("get template"); err != nil {
		return Template{}, err
	}
	var t Template
	_, err := c.call(ctx, "get template "+ref, http.MethodGet, templatePath(ref), nil, nil, &t)
	return t, err
}

// DeleteTemplate deletes one of the team's templates with its builds'
// snapshots and cached layers; refused while sandboxes run from it.
func (c *Client) DeleteTemplate(ctx context.Context, ref string) error {
	if err := c.wrennOnly("delete template"); err != nil {
		return err
	}
	_, err := c.call(ctx, "delete template "+ref, http.MethodDelete, templatePath(ref), nil, nil, nil)
	return err
}

// PublishTemplate makes one of the team's templates a platform template
// every team can start sandboxes from (public), or takes it back
// (platform admins only).
func (c *Client) PublishTemplate(ctx context.Context, ref string, public bool) (Template, error) {
	if err := c.wrennOnly("publish template"); err != nil {
		return Template{}, err
	}
	action := "unpublish"
	if public {
		action = "publish"
	}
	var t Template
	_, err := c.call(ctx, action+" template "+ref, http.MethodPost, templatePath(ref, action), nil, nil, &t)
	return t, err
}

// ListTemplateBuilds lists a template's builds, newest first.
func (c *Client) ListTemplateBuilds(ctx context.Context, ref string) ([]TemplateBuild, error) {
	if err := c.wrennOnly("list template builds"); err != nil {
		return nil, err
	}
	var bs []TemplateBuild
	_, err := c.call(ctx, "list builds of "+ref, http.MethodGet, templatePath(ref, "builds"), nil, nil, &bs)
	return bs, err
}

// GetTemplateBuild returns one build of a template.
func (c *Client) GetTemplateBuild(ctx context.Context, ref, buildID string) (TemplateBuild, error) {
	if err := c.wrennOnly("get template build"); err != nil {
		return TemplateBuild{}, err
	}
	var b TemplateBuild
	_, err := c.call(ctx, "get build "+buildID, http.MethodGet, templatePath(ref, "builds", buildID), nil, nil, &b)
	return b, err
}

// CancelTemplateBuild stops a waiting or running build; it ends as
// cancelled and leaves nothing behind.
func (c *Client) CancelTemplateBuild(ctx context.Context, ref, buildID string) (TemplateBuild, error) {
	if err := c.wrennOnly("cancel template build"); err != nil {
		return TemplateBuild{}, err
	}
	var b TemplateBuild
	_, err := c.call(ctx, "cancel build "+buildID, http.MethodPost, templatePath(ref, "builds", buildID, "cancel"), nil, nil, &b)
	return b, err
}

// TemplateBuildLogs iterates over a build's log from its start. With
// follow, lines come as the build writes them and the loop ends when the
// build does; otherwise it ends with the lines written so far.
func (c *Client) TemplateBuildLogs(ctx context.Context, ref, buildID string, follow bool) iter.Seq2[BuildLogLine, error] {
	return func(yield func(BuildLogLine, error) bool) {
		if err := c.wrennOnly("template build logs"); err != nil {
			yield(BuildLogLine{}, err)
			return
		}
		op := "logs of build " + buildID
		q := url.Values{}
		if follow {
			q.Set("follow", "true")
		}
		res, err := c.send(ctx, op, http.MethodGet, templatePath(ref, "builds", buildID, "logs"), q, nil, "")
		if err != nil {
			yield(BuildLogLine{}, err)
			return
		}
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			var l BuildLogLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				yield(BuildLogLine{}, fmt.Errorf("%s: decode a line: %w", op, err))
				return
			}
			if !yield(l, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			yield(BuildLogLine{}, requestError(op, err))
		}
	}
}

// PackTemplateFiles packs what a COPY step's source names in contextDir
// (a file, a directory, or a glob such as "app/*.py"; relative, inside
// the context) into a gzipped tar that keeps the paths relative to
// contextDir, and returns it with its hash: a SHA-256 over the entries'
// paths, types, modes and contents (not their times), so unchanged files
// hash the same and are not uploaded again. Symbolic links are packed as
// links; nothing outside contextDir is read.
func PackTemplateFiles(contextDir, src string) (hash string, archive []byte, err error) {
	clean := path.Clean(strings.TrimSuffix(src, "/"))
	if src == "" || path.IsAbs(src) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", nil, &APIError{Op: "pack template files", Message: fmt.Sprintf("COPY source %q must be a path inside the build context", src), kind: ErrInvalid}
	}
	root, err := os.OpenRoot(contextDir)
	if err != nil {
		return "", nil, fmt.Errorf("build context: %w", err)
	}
	defer root.Close()
	fsys := root.FS()
	matches, err := fs.Glob(fsys, clean)
	if err != nil {
		return "", nil, fmt.Errorf("COPY source %q: %w", src, err)
	}
	if len(matches) == 0 {
		return "", nil, &APIError{Op: "pack template files", Message: fmt.Sprintf("COPY source %q: nothing matches in %s", src, contextDir), kind: ErrInvalid}
	}
	var paths []string
	for _, m := range matches {
		err := fs.WalkDir(fsys, m, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			paths = append(paths, p)
			return nil
		})
		if err != nil {
			return "", nil, fmt.Errorf("COPY source %q: %w", src, err)
		}
	}
	slices.Sort(paths)
	paths = slices.Compact(paths)

	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	sum := sha256.New()
	for _, p := range paths {
		fi, err := root.Lstat(p)
		if err != nil {
			return "", nil, err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = root.Readlink(p); err != nil {
				return "", nil, err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", p, err)
		}
		hdr.Name = p
		if fi.IsDir() {
			hdr.Name += "/"
		}
		// Times, owners and names of owners are not the files: leave
		// them out of the archive so it depends only on what is hashed.
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.Format = tar.FormatPAX
		fmt.Fprintf(sum, "%s\x00%c\x00%o\x00%d\x00%s\x00", hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Size, link)
		if err := tw.WriteHeader(hdr); err != nil {
			return "", nil, err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		f, err := root.Open(p)
		if err != nil {
			return "", nil, err
		}
		_, err = io.Copy(io.MultiWriter(tw, sum), f)
		f.Close()
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	if err := errors.Join(tw.Close(), zw.Close()); err != nil {
		return "", nil, err
	}
	return hex.EncodeToString(sum.Sum(nil)), buf.Bytes(), nil
}

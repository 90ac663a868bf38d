package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/internal/ociimage"
	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/limits"
)

// Limits on template builds.
const (
	// MaxBuildSteps bounds one spec.
	MaxBuildSteps = 200
	// MaxContextBytes bounds one uploaded build-context archive; archives
	// live in PostgreSQL, so they are kept small.
	MaxContextBytes = 64 << 20
	// BuildTimeLimit bounds a whole build; the build sandbox expires then.
	BuildTimeLimit = 30 * time.Minute
	// ReadyTimeout bounds the wait for a start command's ready check.
	ReadyTimeout = 2 * time.Minute
	// DefaultTag is the tag every successful build gets.
	DefaultTag = "latest"
)

// Step types of a build spec (the vocabulary E2B's Template SDK uses).
const (
	StepRun     = "RUN"
	StepCopy    = "COPY"
	StepEnv     = "ENV"
	StepWorkdir = "WORKDIR"
	StepUser    = "USER"
)

// BuildStep is one step: RUN [cmd, user?], COPY [src, dest, user?, mode?]
// with FilesHash naming the uploaded archive, ENV [k1, v1, k2, v2...],
// WORKDIR [dir], USER [name].
type BuildStep struct {
	Type      string   `json:"type"`
	Args      []string `json:"args"`
	FilesHash string   `json:"files_hash,omitempty"`
	// Force runs the step (and every one after it) even when cached.
	Force bool `json:"force,omitempty"`
}

// BuildSpec is what a build runs: a base, steps, and an optional start
// command with a ready check.
type BuildSpec struct {
	// FromTemplate is an image (minimal, base, ...) or one of the team's
	// templates (name or name:tag).
	FromTemplate string `json:"from_template,omitempty"`
	// FromImage is an OCI image in a registry (registry/repository:tag
	// or @digest): the build's agent makes a guest image of it.
	FromImage string `json:"from_image,omitempty"`
	// FromImageRegistry is FromImage's registry credential. It lives in
	// memory for the build only: the spec is stored without it.
	FromImageRegistry *RegistryAuth `json:"from_image_registry,omitempty"`
	Steps             []BuildStep   `json:"steps"`
	StartCmd          string        `json:"start_cmd,omitempty"`
	ReadyCmd          string        `json:"ready_cmd,omitempty"`
	// Force ignores the layer cache for the whole build.
	Force bool `json:"force,omitempty"`
}

// RegistryAuth is a user name and password for an image registry.
type RegistryAuth struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

var (
	templateNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	tagPattern          = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	filesHashPattern    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	envNamePattern      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// SplitTemplateRef splits "name:tag" (tag empty when absent).
func SplitTemplateRef(ref string) (name, tag string) {
	name, tag, _ = strings.Cut(ref, ":")
	return name, tag
}

func validTemplateName(name string) error {
	if !templateNamePattern.MatchString(name) {
		return errf(ErrInvalid, "template name %q: 1-63 lowercase letters, digits, '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

func validTags(tags []string) error {
	for _, t := range tags {
		if !tagPattern.MatchString(t) {
			return errf(ErrInvalid, "tag %q: 1-63 letters, digits, '.', '_' or '-'", t)
		}
	}
	return nil
}

// ValidFilesHash reports whether h can name a build-context archive.
func ValidFilesHash(h string) error {
	if !filesHashPattern.MatchString(h) {
		return errf(ErrInvalid, "files hash %q: 64 lowercase hex digits (SHA-256)", h)
	}
	return nil
}

// contextPath checks a COPY source: relative, and inside the context.
func contextPath(src string) error {
	if src == "" || path.IsAbs(src) || strings.HasPrefix(src, "~") {
		return errf(ErrInvalid, "COPY source %q must be a path relative to the build context", src)
	}
	clean := path.Clean(src)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return errf(ErrInvalid, "COPY source %q escapes the build context", src)
	}
	return nil
}

// validate checks the spec's shape; the base and files are checked
// against the database by checkSpec.
func (sp *BuildSpec) validate() error {
	switch {
	case sp.FromImage != "" && sp.FromTemplate != "":
		return errf(ErrInvalid, "a build has one base: fromImage or fromTemplate, not both")
	case sp.FromImage != "":
		if err := ociimage.ParseReference(sp.FromImage); err != nil {
			return errf(ErrInvalid, "fromImage: %v", err)
		}
		if a := sp.FromImageRegistry; a != nil && (a.Username == "" || a.Password == "") {
			return errf(ErrInvalid, "fromImageRegistry: both username and password are needed")
		}
	case sp.FromImageRegistry != nil:
		return errf(ErrInvalid, "fromImageRegistry is a credential for fromImage, which is not set")
	case sp.FromTemplate == "":
		return errf(ErrInvalid, "a build needs a base: fromTemplate (an image such as base, or one of your templates) or fromImage (an OCI image in a registry)")
	}
	switch {
	case len(sp.Steps) == 0 && sp.StartCmd == "":
		return errf(ErrInvalid, "steps: a build needs at least one step or a start command")
	case len(sp.Steps) > MaxBuildSteps:
		return errf(ErrInvalid, "steps: at most %d", MaxBuildSteps)
	case sp.ReadyCmd != "" && sp.StartCmd == "":
		return errf(ErrInvalid, "readyCmd needs a startCmd")
	}
	for i := range sp.Steps {
		st := &sp.Steps[i]
		n := len(st.Args)
		bad := func(format string, args ...any) error {
			return errf(ErrInvalid, "step %d (%s): %s", i+1, st.Type, fmt.Sprintf(format, args...))
		}
		switch st.Type {
		case StepRun:
			if n < 1 || n > 2 || strings.TrimSpace(st.Args[0]) == "" {
				return bad("args are [command, user?]")
			}
		case StepCopy:
			if n < 2 || n > 4 || st.Args[1] == "" {
				return bad("args are [source, destination, user?, mode?]")
			}
			if err := contextPath(st.Args[0]); err != nil {
				return bad("%v", err)
			}
			if !path.IsAbs(st.Args[1]) && !strings.HasPrefix(st.Args[1], "~") {
				// A relative destination is resolved against the workdir.
				if strings.Contains(st.Args[1], "..") {
					return bad("destination %q must not climb with '..'", st.Args[1])
				}
			}
			if n == 4 && st.Args[3] != "" && !regexp.MustCompile(`^[0-7]{3,4}$`).MatchString(st.Args[3]) {
				return bad("mode %q must be octal", st.Args[3])
			}
			if err := ValidFilesHash(st.FilesHash); err != nil {
				return bad("filesHash: upload the files first: %v", err)
			}
		case StepEnv:
			if n == 0 || n%2 != 0 {
				return bad("args are name, value pairs")
			}
			for j := 0; j < n; j += 2 {
				if !envNamePattern.MatchString(st.Args[j]) {
					return bad("%q is not an environment variable name", st.Args[j])
				}
			}
		case StepWorkdir:
			if n != 1 || st.Args[0] == "" {
				return bad("args are [directory]")
			}
		case StepUser:
			if n != 1 || !regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`).MatchString(st.Args[0]) {
				return bad("args are [user name]")
			}
		default:
			return errf(ErrInvalid, "step %d: unknown step type %q; Wrenn runs RUN, COPY, ENV, WORKDIR and USER", i+1, st.Type)
		}
	}
	return nil
}

// buildBase is what a build starts from: an image on the hosts, a
// ready build of one of the team's templates, or an OCI image, which the
// build's agent makes into an image (image, key and host are set then).
type buildBase struct {
	image string
	build *db.TemplateBuild
	key   string
	oci   string
	host  *uuid.UUID
}

// checkSpec validates sp for the caller's team: its base resolves and
// every COPY's archive was uploaded.
func (s *Service) checkSpec(ctx context.Context, c auth.Caller, sp *BuildSpec) (buildBase, error) {
	if err := sp.validate(); err != nil {
		return buildBase{}, err
	}
	for i, st := range sp.Steps {
		if st.Type != StepCopy {
			continue
		}
		ok, err := s.Q.TemplateFileExists(ctx, db.TemplateFileExistsParams{TeamID: c.TeamID, Hash: st.FilesHash})
		if err != nil {
			return buildBase{}, err
		}
		if !ok {
			return buildBase{}, errf(ErrInvalid, "step %d (COPY %s): no uploaded files with hash %s; upload the archive first", i+1, st.Args[0], st.FilesHash)
		}
	}
	if sp.FromImage != "" {
		return buildBase{oci: sp.FromImage}, nil
	}
	return s.resolveBase(ctx, c, sp.FromTemplate)
}

func (s *Service) resolveBase(ctx context.Context, c auth.Caller, ref string) (buildBase, error) {
	b, err := s.FindTemplateBuild(ctx, c, ref)
	switch {
	case err == nil:
		return buildBase{build: &b, key: "build:" + b.ID.String()}, nil
	case !errors.Is(err, ErrNotFound):
		return buildBase{}, err
	}
	if templateName.MatchString(ref) && !hostOnlyImage(ref) && s.TemplateAvailable(ctx, ref) {
		return buildBase{image: ref, key: "image:" + ref}, nil
	}
	return buildBase{}, errf(ErrInvalid, "unknown base %q: no template of your team and no image on any ready host has that name", ref)
}

// Template is a template as the API shows it.
type Template struct {
	db.TeamTemplate
	// Latest is its newest ready build, if any.
	Latest *db.TemplateBuild
	Tags   []db.TemplateTag
}

// FindTemplate finds one of the team's templates by wire ID or name.
func (s *Service) FindTemplate(ctx context.Context, c auth.Caller, ref string) (db.TeamTemplate, error) {
	if err := requireTeam(c); err != nil {
		return db.TeamTemplate{}, err
	}
	if u, err := id.Parse(id.Template, ref); err == nil {
		t, err := s.Q.GetTeamTemplate(ctx, db.GetTeamTemplateParams{ID: u, TeamID: c.TeamID})
		return t, notFound(err, "template")
	}
	name, _ := SplitTemplateRef(ref)
	t, err := s.Q.GetTeamTemplateByName(ctx, db.GetTeamTemplateByNameParams{TeamID: c.TeamID, Name: name})
	return t, notFound(err, "template")
}

// findVisibleTemplate finds a template the team may use: its own (by
// wire ID or name), else a platform template published by an admin.
func (s *Service) findVisibleTemplate(ctx context.Context, c auth.Caller, ref string) (db.TeamTemplate, error) {
	t, err := s.FindTemplate(ctx, c, ref)
	if !errors.Is(err, ErrNotFound) {
		return t, err
	}
	if u, perr := id.Parse(id.Template, ref); perr == nil {
		pt, perr := s.Q.GetPublicTemplate(ctx, u)
		if perr == nil {
			return pt, nil
		}
		return t, err
	}
	name, _ := SplitTemplateRef(ref)
	if pt, perr := s.Q.GetPublicTemplateByName(ctx, name); perr == nil {
		return pt, nil
	}
	return t, err
}

// FindTemplateBuild resolves "name", "name:tag" or a template ID (the
// team's own or a platform template) to the ready build a sandbox starts
// from: the tag's build, else the newest.
func (s *Service) FindTemplateBuild(ctx context.Context, c auth.Caller, ref string) (db.TemplateBuild, error) {
	t, err := s.findVisibleTemplate(ctx, c, ref)
	if err != nil {
		return db.TemplateBuild{}, err
	}
	_, tag := SplitTemplateRef(ref)
	if tag != "" {
		tg, err := s.Q.GetTemplateTag(ctx, db.GetTemplateTagParams{TemplateID: t.ID, Tag: tag})
		if err != nil {
			return db.TemplateBuild{}, notFound(err, "template tag")
		}
		b, err := s.Q.GetTemplateBuild(ctx, db.GetTemplateBuildParams{ID: tg.BuildID, TemplateID: t.ID})
		if err != nil {
			return db.TemplateBuild{}, notFound(err, "template build")
		}
		if b.Status != "ready" || b.SnapshotID == nil {
			return db.TemplateBuild{}, errf(ErrNotFound, "template %s:%s has no ready build", t.Name, tag)
		}
		return b, nil
	}
	b, err := s.Q.LatestReadyBuild(ctx, t.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return db.TemplateBuild{}, errf(ErrNotFound, "template %s has no ready build yet", t.Name)
	}
	return b, err
}

// fromTemplate points a sandbox request naming one of the team's
// templates at its build's snapshot, with the build's environment under
// the request's own. Images and unknown names are left alone.
func (s *Service) fromTemplate(ctx context.Context, c auth.Caller, in *CreateSandboxInput) error {
	if in.SnapshotID != nil || in.Template == "" || requireTeam(c) != nil {
		return nil
	}
	b, err := s.FindTemplateBuild(ctx, c, in.Template)
	if errors.Is(err, ErrNotFound) {
		if _, terr := s.findVisibleTemplate(ctx, c, in.Template); terr == nil {
			return err // the template exists but cannot start a sandbox
		}
		return nil
	}
	if err != nil {
		return err
	}
	in.SnapshotID = b.SnapshotID
	if b.TeamID != c.TeamID {
		in.snapshotTeam = &b.TeamID
	}
	var envs map[string]string
	_ = json.Unmarshal(b.Envs, &envs)
	if len(envs) > 0 {
		merged := make(map[string]string, len(envs)+len(in.EnvVars))
		for k, v := range envs {
			merged[k] = v
		}
		for k, v := range in.EnvVars {
			merged[k] = v
		}
		in.EnvVars = merged
	}
	return nil
}

// CreateTemplateInput opens a build: the template is made if new.
type CreateTemplateInput struct {
	Name      string
	Tags      []string
	VCPUs     int32
	MemoryMiB int32
}

// CreateTemplateBuild makes (or finds) the named template and a waiting
// build for it; StartBuild gives it its spec.
func (s *Service) CreateTemplateBuild(ctx context.Context, c auth.Caller, in CreateTemplateInput) (db.TeamTemplate, db.TemplateBuild, error) {
	if err := requireTeam(c); err != nil {
		return db.TeamTemplate{}, db.TemplateBuild{}, err
	}
	name, tag := SplitTemplateRef(in.Name)
	if err := validTemplateName(name); err != nil {
		return db.TeamTemplate{}, db.TemplateBuild{}, err
	}
	if tag != "" {
		in.Tags = append(in.Tags, tag)
	}
	if err := validTags(in.Tags); err != nil {
		return db.TeamTemplate{}, db.TemplateBuild{}, err
	}
	if in.VCPUs == 0 {
		in.VCPUs = limits.DefaultVCPUs
	}
	if in.MemoryMiB == 0 {
		in.MemoryMiB = limits.DefaultMemoryMiB
	}
	if in.VCPUs < 1 || in.VCPUs > MaxVCPUs {
		return db.TeamTemplate{}, db.TemplateBuild{}, errf(ErrInvalid, "cpuCount/vcpus must be 1 to %d", MaxVCPUs)
	}
	if in.MemoryMiB < MinMemoryMiB || in.MemoryMiB > MaxMemoryMiB {
		return db.TeamTemplate{}, db.TemplateBuild{}, errf(ErrInvalid, "memoryMB/memory_mib must be %d to %d", MinMemoryMiB, MaxMemoryMiB)
	}
	spec, _ := json.Marshal(map[string]any{"tags": in.Tags})
	var t db.TeamTemplate
	var b db.TemplateBuild
	err := s.inTx(ctx, func(q *db.Queries) error {
		var err error
		if t, err = q.UpsertTeamTemplate(ctx, db.UpsertTeamTemplateParams{ID: id.New(), TeamID: c.TeamID, Name: name}); err != nil {
			return err
		}
		b, err = q.CreateTemplateBuild(ctx, db.CreateTemplateBuildParams{
			ID: id.New(), TemplateID: t.ID, TeamID: c.TeamID, Status: "waiting", Spec: spec, Vcpus: in.VCPUs, MemoryMib: in.MemoryMiB,
		})
		return err
	})
	return t, b, err
}

// buildRecord is what template_builds.spec holds: the spec and the tags
// the build gets when it succeeds.
type buildRecord struct {
	BuildSpec
	Tags []string `json:"tags,omitempty"`
}

// StartBuild gives a waiting build its spec and runs it in the
// background; its progress is in BuildLogs and GetBuild.
func (s *Service) StartBuild(ctx context.Context, c auth.Caller, templateID, buildID uuid.UUID, sp BuildSpec) (db.TemplateBuild, error) {
	t, err := s.FindTemplate(ctx, c, id.Format(id.Template, templateID))
	if err != nil {
		return db.TemplateBuild{}, err
	}
	b, err := s.Q.GetTemplateBuild(ctx, db.GetTemplateBuildParams{ID: buildID, TemplateID: t.ID})
	if err != nil {
		return db.TemplateBuild{}, notFound(err, "template build")
	}
	if b.Status != "waiting" {
		return db.TemplateBuild{}, errf(ErrConflict, "build %s is %s; start a new build", id.Format(id.Build, b.ID), b.Status)
	}
	base, err := s.checkSpec(ctx, c, &sp)
	if err != nil {
		// The build ends here; a template with nothing built goes too.
		_, _ = s.Q.FinishTemplateBuild(ctx, db.FinishTemplateBuildParams{ID: b.ID, Status: "error", Envs: []byte("{}"), Error: err.Error()})
		s.dropUploads(ctx, b, sp.Steps)
		if _, lerr := s.Q.LatestReadyBuild(ctx, t.ID); errors.Is(lerr, pgx.ErrNoRows) {
			_ = s.Q.DeleteTeamTemplate(ctx, t.ID)
		}
		return db.TemplateBuild{}, err
	}
	var rec buildRecord
	_ = json.Unmarshal(b.Spec, &rec)
	rec.BuildSpec = sp
	stored := rec
	stored.FromImageRegistry = nil // credentials are never stored
	raw, _ := json.Marshal(stored)
	b, err = s.Q.StartTemplateBuild(ctx, db.StartTemplateBuildParams{ID: b.ID, Spec: raw})
	if errors.Is(err, pgx.ErrNoRows) {
		return db.TemplateBuild{}, errf(ErrConflict, "build %s was started or cancelled meanwhile", id.Format(id.Build, buildID))
	}
	if err != nil {
		return db.TemplateBuild{}, err
	}
	s.builds.start(s, c, t, b, rec, base)
	return b, nil
}

// BuildTemplate is CreateTemplateBuild and StartBuild in one call.
func (s *Service) BuildTemplate(ctx context.Context, c auth.Caller, in CreateTemplateInput, sp BuildSpec) (db.TeamTemplate, db.TemplateBuild, error) {
	// The spec is checked before anything is written: a bad spec leaves
	// no template behind.
	if err := validTemplateName(strings.SplitN(in.Name, ":", 2)[0]); err != nil {
		return db.TeamTemplate{}, db.TemplateBuild{}, err
	}
	if _, err := s.checkSpec(ctx, c, &sp); err != nil {
		return db.TeamTemplate{}, db.TemplateBuild{}, err
	}
	t, b, err := s.CreateTemplateBuild(ctx, c, in)
	if err != nil {
		return t, b, err
	}
	b, err = s.StartBuild(ctx, c, t.ID, b.ID, sp)
	return t, b, err
}

// ListBuiltTemplates lists the team's built templates, then the
// platform templates of other teams.
func (s *Service) ListBuiltTemplates(ctx context.Context, c auth.Caller) ([]Template, error) {
	if err := requireTeam(c); err != nil {
		return nil, err
	}
	rows, err := s.Q.ListVisibleTemplates(ctx, c.TeamID)
	if err != nil {
		return nil, err
	}
	out := make([]Template, 0, len(rows))
	for _, t := range rows {
		v, err := s.templateView(ctx, t)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// GetTemplate returns one of the team's templates or a platform template.
func (s *Service) GetTemplate(ctx context.Context, c auth.Caller, ref string) (Template, error) {
	t, err := s.findVisibleTemplate(ctx, c, ref)
	if err != nil {
		return Template{}, err
	}
	return s.templateView(ctx, t)
}

func (s *Service) templateView(ctx context.Context, t db.TeamTemplate) (Template, error) {
	v := Template{TeamTemplate: t}
	if b, err := s.Q.LatestReadyBuild(ctx, t.ID); err == nil {
		v.Latest = &b
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return v, err
	}
	tags, err := s.Q.ListTemplateTags(ctx, t.ID)
	v.Tags = tags
	return v, err
}

// ListBuilds lists a template's builds, newest first.
func (s *Service) ListBuilds(ctx context.Context, c auth.Caller, ref string) ([]db.TemplateBuild, error) {
	t, err := s.FindTemplate(ctx, c, ref)
	if err != nil {
		return nil, err
	}
	return s.Q.ListTemplateBuilds(ctx, t.ID)
}

// GetBuild returns one build of one of the team's templates.
func (s *Service) GetBuild(ctx context.Context, c auth.Caller, ref string, buildID uuid.UUID) (db.TemplateBuild, error) {
	t, err := s.FindTemplate(ctx, c, ref)
	if err != nil {
		return db.TemplateBuild{}, err
	}
	b, err := s.Q.GetTemplateBuild(ctx, db.GetTemplateBuildParams{ID: buildID, TemplateID: t.ID})
	return b, notFound(err, "template build")
}

// BuildLogs returns up to limit log lines of a build from offset on.
func (s *Service) BuildLogs(ctx context.Context, c auth.Caller, ref string, buildID uuid.UUID, offset, limit int32) ([]db.TemplateBuildLog, error) {
	if _, err := s.GetBuild(ctx, c, ref, buildID); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	return s.Q.BuildLogs(ctx, db.BuildLogsParams{BuildID: buildID, Seq: max(offset, 0), Limit: limit})
}

// CancelBuild asks a waiting or running build to stop; it ends as
// cancelled and leaves nothing behind.
func (s *Service) CancelBuild(ctx context.Context, c auth.Caller, ref string, buildID uuid.UUID) (db.TemplateBuild, error) {
	b, err := s.GetBuild(ctx, c, ref, buildID)
	if err != nil {
		return b, err
	}
	if _, err := s.Q.RequestBuildCancel(ctx, b.ID); errors.Is(err, pgx.ErrNoRows) {
		return b, errf(ErrConflict, "build %s is %s; only a waiting or running build can be cancelled", id.Format(id.Build, b.ID), b.Status)
	} else if err != nil {
		return b, err
	}
	if b.Status == "waiting" {
		// Nothing runs it yet: it ends here.
		return s.Q.FinishTemplateBuild(ctx, db.FinishTemplateBuildParams{ID: b.ID, Status: "cancelled", Envs: []byte("{}"), Error: "cancelled before it started"})
	}
	s.builds.cancel(b.ID)
	return s.GetBuild(ctx, c, ref, buildID)
}

// DeleteTemplate removes a template, its builds' snapshots and cached
// layers; refused while a sandbox runs from one of its builds.
func (s *Service) DeleteTemplate(ctx context.Context, c auth.Caller, ref string) error {
	t, err := s.ownTemplate(ctx, c, ref, "delete")
	if err != nil {
		return err
	}
	builds, err := s.Q.ListTemplateBuilds(ctx, t.ID)
	if err != nil {
		return err
	}
	var snaps []db.Snapshot
	for _, b := range builds {
		if b.Status == "building" {
			return errf(ErrConflict, "template %s has a running build (%s); cancel it first", t.Name, id.Format(id.Build, b.ID))
		}
		layers, err := s.Q.BuildLayerSnapshots(ctx, &b.ID)
		if err != nil {
			return err
		}
		snaps = append(snaps, layers...)
	}
	finals, err := s.Q.TemplateSnapshots(ctx, t.ID)
	if err != nil {
		return err
	}
	ids := make([]uuid.UUID, 0, len(finals))
	for _, sn := range finals {
		ids = append(ids, sn.ID)
	}
	if n, err := s.Q.SandboxesFromSnapshots(ctx, ids); err != nil {
		return err
	} else if n > 0 {
		return errf(ErrConflict, "template %s is used by %d sandbox(es); destroy them first", t.Name, n)
	}
	for _, sn := range append(finals, snaps...) {
		if err := s.dropSnapshot(ctx, sn); err != nil {
			return err
		}
	}
	return s.Q.DeleteTeamTemplate(ctx, t.ID)
}

// dropSnapshot removes a snapshot's files and row.
func (s *Service) dropSnapshot(ctx context.Context, sn db.Snapshot) error {
	if err := s.deleteSnapshotFiles(ctx, sn); err != nil {
		return err
	}
	return s.Q.DeleteSnapshot(ctx, sn.ID)
}

// HasTemplateFile reports whether the team uploaded the archive hash.
func (s *Service) HasTemplateFile(ctx context.Context, c auth.Caller, hash string) (bool, error) {
	if err := requireTeam(c); err != nil {
		return false, err
	}
	if err := ValidFilesHash(hash); err != nil {
		return false, err
	}
	return s.Q.TemplateFileExists(ctx, db.TemplateFileExistsParams{TeamID: c.TeamID, Hash: hash})
}

// PutTemplateFile stores a build-context archive (tar, optionally
// gzipped) under the hash the client computed over its files.
func (s *Service) PutTemplateFile(ctx context.Context, c auth.Caller, hash string, data []byte) error {
	if _, err := s.HasTemplateFile(ctx, c, hash); err != nil {
		return err
	}
	if len(data) > MaxContextBytes {
		return errf(ErrInvalid, "the build context is %d bytes; at most %d", len(data), MaxContextBytes)
	}
	if len(data) == 0 {
		return errf(ErrInvalid, "the build context archive is empty")
	}
	return s.Q.PutTemplateFile(ctx, db.PutTemplateFileParams{TeamID: c.TeamID, Hash: hash, Data: data})
}

// layerKey chains a step onto the key of the layer before it: a layer is
// reused only when its base, every step before it and its own inputs
// (for COPY, the archive's hash) are the same.
func layerKey(prev string, st BuildStep) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", prev, st.Type)
	for _, a := range st.Args {
		fmt.Fprintf(h, "%d:%s\n", len(a), a)
	}
	fmt.Fprintf(h, "files:%s\n", st.FilesHash)
	return hex.EncodeToString(h.Sum(nil))
}

// FailOrphanBuilds ends builds left running by a control plane that
// stopped: nothing runs them any more. (One control plane per database:
// with several replicas a restart would also end the others' builds.)
func (s *Service) FailOrphanBuilds(ctx context.Context) error {
	return s.Q.FailOrphanBuilds(ctx)
}

// uploadTokenTTL bounds how long an upload link handed to an SDK works.
const uploadTokenTTL = 15 * time.Minute

type uploadGrant struct {
	Caller  auth.Caller `json:"caller"`
	Hash    string      `json:"hash"`
	Expires time.Time   `json:"expires"`
}

// UploadToken lets whoever holds it upload the archive hash for c's team
// for a short while: E2B's SDK uploads to a URL with headers the API
// gives it, without its API key. The token is sealed (authenticated
// encryption), sent in a header, never in the URL.
func (s *Service) UploadToken(c auth.Caller, hash string) string {
	b, _ := json.Marshal(uploadGrant{Caller: c, Hash: hash, Expires: time.Now().Add(uploadTokenTTL)})
	return hex.EncodeToString(s.Keys.Seal(string(b)))
}

// CheckUploadToken returns the caller an upload token was made for.
func (s *Service) CheckUploadToken(tok, hash string) (auth.Caller, error) {
	raw, err := hex.DecodeString(tok)
	if err != nil {
		return auth.Caller{}, errf(ErrUnauthorized, "malformed upload token")
	}
	plain, err := s.Keys.Open(raw)
	if err != nil {
		return auth.Caller{}, errf(ErrUnauthorized, "invalid upload token")
	}
	var g uploadGrant
	if json.Unmarshal([]byte(plain), &g) != nil || g.Hash != hash {
		return auth.Caller{}, errf(ErrUnauthorized, "the upload token is for other files")
	}
	if time.Now().After(g.Expires) {
		return auth.Caller{}, errf(ErrUnauthorized, "the upload token expired; ask for a new upload link")
	}
	return g.Caller, nil
}

// TagBuild points tags of a template at the build "name:tag" (or the
// newest ready build for a bare name) names.
func (s *Service) TagBuild(ctx context.Context, c auth.Caller, target string, tags []string) (db.TemplateBuild, error) {
	if len(tags) == 0 {
		return db.TemplateBuild{}, errf(ErrInvalid, "tags: give at least one")
	}
	if err := validTags(tags); err != nil {
		return db.TemplateBuild{}, err
	}
	if _, err := s.ownTemplate(ctx, c, target, "tag"); err != nil {
		return db.TemplateBuild{}, err
	}
	b, err := s.FindTemplateBuild(ctx, c, target)
	if err != nil {
		return b, err
	}
	for _, tag := range tags {
		if err := s.Q.SetTemplateTag(ctx, db.SetTemplateTagParams{TemplateID: b.TemplateID, Tag: tag, BuildID: b.ID}); err != nil {
			return b, err
		}
	}
	return b, nil
}

// UntagTemplate removes tags from a template; its builds stay.
func (s *Service) UntagTemplate(ctx context.Context, c auth.Caller, name string, tags []string) error {
	t, err := s.FindTemplate(ctx, c, name)
	if err != nil {
		return err
	}
	for _, tag := range tags {
		if _, err := s.Q.GetTemplateTag(ctx, db.GetTemplateTagParams{TemplateID: t.ID, Tag: tag}); err != nil {
			return notFound(err, "tag "+tag)
		}
		if err := s.Q.DeleteTemplateTag(ctx, db.DeleteTemplateTagParams{TemplateID: t.ID, Tag: tag}); err != nil {
			return err
		}
	}
	return nil
}

// dropUploads removes the archives steps name that no other live build
// of the team names: a failed build leaves no files behind.
func (s *Service) dropUploads(ctx context.Context, b db.TemplateBuild, steps []BuildStep) {
	mine := map[string]bool{}
	for _, st := range steps {
		if st.FilesHash != "" {
			mine[st.FilesHash] = true
		}
	}
	if len(mine) == 0 {
		return
	}
	specs, err := s.Q.ReadyBuildSpecs(ctx, db.ReadyBuildSpecsParams{TeamID: b.TeamID, ID: b.ID})
	if err != nil {
		return
	}
	for _, raw := range specs {
		var other buildRecord
		if json.Unmarshal(raw, &other) == nil {
			for _, st := range other.Steps {
				delete(mine, st.FilesHash)
			}
		}
	}
	for h := range mine {
		_ = s.Q.DeleteTemplateFile(ctx, db.DeleteTemplateFileParams{TeamID: b.TeamID, Hash: h})
	}
}

// ownTemplate finds one of the team's own templates for a change (op);
// a platform template of another team is refused with what to do.
func (s *Service) ownTemplate(ctx context.Context, c auth.Caller, ref, op string) (db.TeamTemplate, error) {
	t, err := s.FindTemplate(ctx, c, ref)
	if errors.Is(err, ErrNotFound) {
		if pt, perr := s.findVisibleTemplate(ctx, c, ref); perr == nil && pt.TeamID != c.TeamID {
			return t, errf(ErrForbidden, "template %s is a platform template of another team: you can start sandboxes from it and build on it, but only its team can %s it", pt.Name, op)
		}
	}
	return t, err
}

// PublishTemplate makes one of the team's templates a platform template
// that every team sees and starts sandboxes from (public), or takes it
// back. Platform admins only; published names are unique.
func (s *Service) PublishTemplate(ctx context.Context, c auth.Caller, ref string, public bool) (Template, error) {
	if err := requireAdmin(c); err != nil {
		return Template{}, err
	}
	t, err := s.ownTemplate(ctx, c, ref, "publish")
	if err != nil {
		return Template{}, err
	}
	if public {
		if other, err := s.Q.GetPublicTemplateByName(ctx, t.Name); err == nil && other.ID != t.ID {
			return Template{}, errf(ErrConflict, "another team already publishes a template named %s; rename yours (build it under another name) to publish it", t.Name)
		}
		if s.TemplateAvailable(ctx, t.Name) {
			return Template{}, errf(ErrConflict, "%s is the name of an image on the hosts; a platform template cannot shadow it", t.Name)
		}
	}
	updated, err := s.Q.SetTemplatePublic(ctx, db.SetTemplatePublicParams{ID: t.ID, Public: public})
	if isUniqueViolation(err) {
		return Template{}, errf(ErrConflict, "another team already publishes a template named %s", t.Name)
	}
	if err != nil {
		return Template{}, err
	}
	return s.templateView(ctx, updated)
}

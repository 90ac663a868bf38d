package e2bcompat

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"git.omukk.dev/wrenn/sandbox/internal/cphttp"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// uploadTokenHeader carries the sealed grant of an upload link.
const uploadTokenHeader = "X-Wrenn-Upload-Token"

// templateRoutes are what the SDK's Template.build(), exists() and the
// tag calls send.
func (h *handler) templateRoutes(r chi.Router) {
	r.Post("/v3/templates", h.requestBuild)
	r.Get("/templates/{templateID}/files/{hash}", h.fileUploadLink)
	r.Put("/templates/{templateID}/files/{hash}/upload", h.uploadFiles)
	r.Post("/v2/templates/{templateID}/builds/{buildID}", h.startBuild)
	r.Get("/templates/{templateID}/builds/{buildID}/status", h.buildStatus)
	r.Get("/templates/aliases/{alias}", h.alias)
	r.Get("/templates/{templateID}/tags", h.tags)
	r.Post("/templates/tags", h.assignTags)
	r.Delete("/templates/tags", h.removeTags)
}

// uploadCaller authenticates an upload by the token its link came with.
func (h *handler) uploadCaller(r *http.Request) (bool, error) {
	tok := r.Header.Get(uploadTokenHeader)
	if tok == "" || r.Method != http.MethodPut || !strings.HasSuffix(r.URL.Path, "/upload") {
		return false, nil
	}
	parts := strings.Split(strings.TrimSuffix(r.URL.Path, "/upload"), "/")
	c, err := h.svc.CheckUploadToken(tok, parts[len(parts)-1])
	if err != nil {
		return true, err
	}
	*r = *r.WithContext(withCaller(r.Context(), c))
	return true, nil
}

type requestBuildBody struct {
	Name          string   `json:"name"`
	Alias         string   `json:"alias"`
	Tags          []string `json:"tags"`
	CPUCount      int32    `json:"cpuCount"`
	MemoryMB      int32    `json:"memoryMB"`
	MinFreeDiskMb *int32   `json:"minFreeDiskMb"`
	TeamID        string   `json:"teamID"`
}

type templateResponse struct {
	TemplateID string   `json:"templateID"`
	BuildID    string   `json:"buildID"`
	Names      []string `json:"names"`
	Aliases    []string `json:"aliases"`
	Tags       []string `json:"tags"`
	Public     bool     `json:"public"`
}

func (h *handler) requestBuild(w http.ResponseWriter, r *http.Request) {
	var b requestBuildBody
	if !h.decode(w, r, &b) {
		return
	}
	switch {
	case b.MinFreeDiskMb != nil:
		writeError(w, http.StatusBadRequest, "minFreeDiskMb is not supported: a build sandbox gets its image's disk")
		return
	case b.TeamID != "":
		writeError(w, http.StatusBadRequest, "teamID is not supported: a build belongs to the API key's team")
		return
	}
	if b.Name == "" {
		b.Name = b.Alias
	}
	cphttp.SetAudit(r.Context(), "template.build", "template", b.Name)
	t, bl, err := h.svc.CreateTemplateBuild(r.Context(), caller(r), service.CreateTemplateInput{Name: b.Name, Tags: b.Tags, VCPUs: b.CPUCount, MemoryMiB: b.MemoryMB})
	if err != nil {
		h.fail(w, err)
		return
	}
	cphttp.SetAudit(r.Context(), "template.build", "template", id.Format(id.Template, t.ID))
	tags := append([]string{}, b.Tags...)
	if _, tag := service.SplitTemplateRef(b.Name); tag != "" {
		tags = append(tags, tag)
	}
	writeJSON(w, http.StatusAccepted, templateResponse{
		TemplateID: id.Format(id.Template, t.ID), BuildID: id.Format(id.Build, bl.ID),
		Names: []string{t.Name}, Aliases: []string{t.Name}, Tags: tags,
	})
}

type fileUpload struct {
	Present bool              `json:"present"`
	URL     string            `json:"url,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

// fileUploadLink answers whether the team has the files; when not, it
// hands a link to this API with a short-lived upload grant in a header.
func (h *handler) fileUploadLink(w http.ResponseWriter, r *http.Request) {
	hash := chi.URLParam(r, "hash")
	tpl := chi.URLParam(r, "templateID")
	if _, err := h.svc.FindTemplate(r.Context(), caller(r), tpl); err != nil {
		h.fail(w, err)
		return
	}
	present, err := h.svc.HasTemplateFile(r.Context(), caller(r), hash)
	if err != nil {
		h.fail(w, err)
		return
	}
	out := fileUpload{Present: present}
	// The SDK uploads again when asked to force it, so it always gets a link.
	out.URL = h.baseURL(r) + Prefix + "/templates/" + tpl + "/files/" + hash + "/upload"
	out.Headers = map[string]string{uploadTokenHeader: h.svc.UploadToken(caller(r), hash)}
	writeJSON(w, http.StatusCreated, out)
}

// baseURL is how the caller reached this API: the configured public URL,
// else the request's own scheme and host.
func (h *handler) baseURL(r *http.Request) string {
	if h.publicURL != "" {
		return strings.TrimSuffix(h.publicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (h *handler) uploadFiles(w http.ResponseWriter, r *http.Request) {
	hash := chi.URLParam(r, "hash")
	cphttp.SetAudit(r.Context(), "template.upload", "files", hash)
	if err := cphttp.ReceiveTemplateFiles(w, r, h.svc, caller(r), hash); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// e2bStep is E2B's TemplateStep; forceUpload, resolveSymlinks and gzip
// only steer the SDK's own upload.
type e2bStep struct {
	Type            string   `json:"type"`
	Args            []string `json:"args"`
	FilesHash       string   `json:"filesHash"`
	Force           bool     `json:"force"`
	ForceUpload     *bool    `json:"forceUpload"`
	ResolveSymlinks *bool    `json:"resolveSymlinks"`
	Gzip            *bool    `json:"gzip"`
}

// e2bRegistry is E2B's fromImageRegistry: type registry carries a user
// name and password; aws and gcp carry cloud credentials Wrenn refuses.
type e2bRegistry struct {
	Type     string `json:"type"`
	Username string `json:"username"`
	Password string `json:"password"`
}

type startBuildBody struct {
	FromImage         string       `json:"fromImage"`
	FromTemplate      string       `json:"fromTemplate"`
	FromImageRegistry *e2bRegistry `json:"fromImageRegistry"`
	StartCmd          string       `json:"startCmd"`
	ReadyCmd          string       `json:"readyCmd"`
	Steps             []e2bStep    `json:"steps"`
	Force             bool         `json:"force"`
}

func (h *handler) startBuild(w http.ResponseWriter, r *http.Request) {
	var b startBuildBody
	if !h.decode(w, r, &b) {
		return
	}
	var registry *service.RegistryAuth
	if reg := b.FromImageRegistry; reg != nil {
		if reg.Type != "registry" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("fromImageRegistry type %q is not supported: use type registry (username and password, fromImage with credentials); AWS and GCP registry credentials are not", reg.Type))
			return
		}
		registry = &service.RegistryAuth{Username: reg.Username, Password: reg.Password}
	}
	tid, err := id.Parse(id.Template, chi.URLParam(r, "templateID"))
	if err != nil {
		writeError(w, http.StatusNotFound, "template not found")
		return
	}
	bid, err := id.Parse(id.Build, chi.URLParam(r, "buildID"))
	if err != nil {
		writeError(w, http.StatusNotFound, "build not found")
		return
	}
	spec := service.BuildSpec{FromTemplate: b.FromTemplate, FromImage: b.FromImage, FromImageRegistry: registry, StartCmd: b.StartCmd, ReadyCmd: b.ReadyCmd, Force: b.Force}
	for _, st := range b.Steps {
		spec.Steps = append(spec.Steps, service.BuildStep{Type: st.Type, Args: st.Args, FilesHash: st.FilesHash, Force: st.Force})
	}
	cphttp.SetAudit(r.Context(), "template.build", "build", id.Format(id.Build, bid))
	if _, err := h.svc.StartBuild(r.Context(), caller(r), tid, bid, spec); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// buildLogEntry is E2B's BuildLogEntry.
type buildLogEntry struct {
	Timestamp time.Time `json:"timestamp"`
	Level     string    `json:"level"`
	Message   string    `json:"message"`
	Step      string    `json:"step,omitempty"`
}

type statusReason struct {
	Message    string          `json:"message"`
	Step       string          `json:"step,omitempty"`
	LogEntries []buildLogEntry `json:"logEntries"`
}

type buildInfo struct {
	BuildID    string          `json:"buildID"`
	TemplateID string          `json:"templateID"`
	Status     string          `json:"status"`
	LogEntries []buildLogEntry `json:"logEntries"`
	Logs       []string        `json:"logs"`
	Reason     *statusReason   `json:"reason,omitempty"`
}

func entries(logs []db.TemplateBuildLog) []buildLogEntry {
	out := make([]buildLogEntry, 0, len(logs))
	for _, l := range logs {
		out = append(out, buildLogEntry{Timestamp: l.At, Level: l.Level, Message: l.Message, Step: l.Step})
	}
	return out
}

func (h *handler) buildStatus(w http.ResponseWriter, r *http.Request) {
	tpl := chi.URLParam(r, "templateID")
	bid, err := id.Parse(id.Build, chi.URLParam(r, "buildID"))
	if err != nil {
		writeError(w, http.StatusNotFound, "build not found")
		return
	}
	offset := int64(0)
	if v := r.URL.Query().Get("logsOffset"); v != "" {
		if offset, err = strconv.ParseInt(v, 10, 32); err != nil || offset < 0 {
			writeError(w, http.StatusBadRequest, "logsOffset must be a non-negative integer")
			return
		}
	}
	c := caller(r)
	// The status is read before the logs: a finished build's lines are
	// all written by then, so the SDK's tail read sees every one.
	b, err := h.svc.GetBuild(r.Context(), c, tpl, bid)
	if err != nil {
		h.fail(w, err)
		return
	}
	logs, err := h.svc.BuildLogs(r.Context(), c, tpl, bid, int32(offset), 500)
	if err != nil {
		h.fail(w, err)
		return
	}
	out := buildInfo{BuildID: id.Format(id.Build, b.ID), TemplateID: id.Format(id.Template, b.TemplateID), LogEntries: entries(logs), Logs: []string{}}
	switch b.Status {
	case "ready", "waiting", "building":
		out.Status = b.Status
	default:
		out.Status = "error"
		out.Reason = &statusReason{Message: b.Error, LogEntries: []buildLogEntry{}}
		if b.FailedStep != nil {
			out.Reason.Step = strconv.Itoa(int(*b.FailedStep))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

type aliasResponse struct {
	TemplateID string `json:"templateID"`
	Public     bool   `json:"public"`
}

func (h *handler) alias(w http.ResponseWriter, r *http.Request) {
	t, err := h.svc.FindTemplate(r.Context(), caller(r), chi.URLParam(r, "alias"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, aliasResponse{TemplateID: id.Format(id.Template, t.ID)})
}

type tagView struct {
	Tag       string    `json:"tag"`
	BuildID   string    `json:"buildID"`
	CreatedAt time.Time `json:"createdAt"`
}

func (h *handler) tags(w http.ResponseWriter, r *http.Request) {
	t, err := h.svc.GetTemplate(r.Context(), caller(r), chi.URLParam(r, "templateID"))
	if err != nil {
		h.fail(w, err)
		return
	}
	out := make([]tagView, 0, len(t.Tags))
	for _, tg := range t.Tags {
		out = append(out, tagView{Tag: tg.Tag, BuildID: id.Format(id.Build, tg.BuildID), CreatedAt: tg.CreatedAt})
	}
	writeJSON(w, http.StatusOK, out)
}

type assignTagsBody struct {
	Target string   `json:"target"`
	Tags   []string `json:"tags"`
}

func (h *handler) assignTags(w http.ResponseWriter, r *http.Request) {
	var b assignTagsBody
	if !h.decode(w, r, &b) {
		return
	}
	cphttp.SetAudit(r.Context(), "template.tag", "template", b.Target)
	bl, err := h.svc.TagBuild(r.Context(), caller(r), b.Target, b.Tags)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"buildID": id.Format(id.Build, bl.ID), "tags": b.Tags})
}

type removeTagsBody struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

func (h *handler) removeTags(w http.ResponseWriter, r *http.Request) {
	var b removeTagsBody
	if !h.decode(w, r, &b) {
		return
	}
	cphttp.SetAudit(r.Context(), "template.untag", "template", b.Name)
	if err := h.svc.UntagTemplate(r.Context(), caller(r), b.Name, b.Tags); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// deleteTemplateOr deletes a built template by ID or name, else hands the
// reference to the snapshot deletion (the SDK deletes both this way).
func (h *handler) deleteTemplateOr(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ref := chi.URLParam(r, "templateID")
		if _, err := h.svc.FindTemplate(r.Context(), caller(r), ref); errors.Is(err, service.ErrNotFound) {
			next(w, r)
			return
		}
		cphttp.SetAudit(r.Context(), "template.delete", "template", ref)
		if err := h.svc.DeleteTemplate(r.Context(), caller(r), ref); err != nil {
			h.fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

package cpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"git.omukk.dev/wrenn/sandbox/internal/cphttp"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// templateRoutes are the built templates' routes: builds, their logs and
// the build-context uploads.
func (a *API) templateRoutes(r chi.Router) {
	r.Post("/templates", a.createTemplate)
	r.Put("/templates/files/{hash}", a.uploadTemplateFiles)
	r.Get("/templates/files/{hash}", a.templateFilesPresent)
	r.Get("/templates/{templateID}", a.getTemplate)
	r.Delete("/templates/{templateID}", a.deleteTemplate)
	r.Get("/templates/{templateID}/builds", a.listBuilds)
	r.Post("/templates/{templateID}/builds", a.createBuild)
	r.Get("/templates/{templateID}/builds/{buildID}", a.getBuild)
	r.Get("/templates/{templateID}/builds/{buildID}/logs", a.buildLogs)
	r.Post("/templates/{templateID}/builds/{buildID}/cancel", a.cancelBuild)
	r.Post("/templates/{templateID}/publish", a.publishTemplate(true))
	r.Post("/templates/{templateID}/unpublish", a.publishTemplate(false))
}

// publishTemplate makes a template a platform template (admins only), or
// takes it back.
func (a *API) publishTemplate(public bool) http.HandlerFunc {
	action := "template.unpublish"
	if public {
		action = "template.publish"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		ref := chi.URLParam(r, "templateID")
		setAudit(r.Context(), action, "template", ref)
		t, err := a.svc.PublishTemplate(r.Context(), caller(r), ref, public)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		setAudit(r.Context(), action, "template", id.Format(id.Template, t.ID))
		writeJSON(w, http.StatusOK, viewTemplate(t))
	}
}

type createTemplateBody struct {
	Name      string   `json:"name"`
	Tags      []string `json:"tags,omitempty"`
	VCPUs     int32    `json:"vcpus,omitempty"`
	MemoryMiB int32    `json:"memory_mib,omitempty"`
	service.BuildSpec
}

type templateView struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	CreatedAt     time.Time         `json:"created_at"`
	LatestBuildID string            `json:"latest_build_id,omitempty"`
	Tags          map[string]string `json:"tags"`
	// Public marks a platform template: every team sees it and starts
	// sandboxes from it; only TeamID's team changes it.
	Public bool   `json:"public"`
	TeamID string `json:"team_id"`
}

func viewTemplate(t service.Template) templateView {
	v := templateView{ID: id.Format(id.Template, t.ID), Name: t.Name, CreatedAt: t.CreatedAt, Tags: map[string]string{}, Public: t.Public, TeamID: id.Format(id.Team, t.TeamID)}
	if t.Latest != nil {
		v.LatestBuildID = id.Format(id.Build, t.Latest.ID)
	}
	for _, tg := range t.Tags {
		v.Tags[tg.Tag] = id.Format(id.Build, tg.BuildID)
	}
	return v
}

type buildView struct {
	ID         string          `json:"id"`
	TemplateID string          `json:"template_id"`
	Status     string          `json:"status"`
	Spec       json.RawMessage `json:"spec"`
	VCPUs      int32           `json:"vcpus"`
	MemoryMiB  int32           `json:"memory_mib"`
	SnapshotID string          `json:"snapshot_id,omitempty"`
	// SizeBytes and HostID are the template snapshot's: its disk use and
	// the host sandboxes from it run on.
	SizeBytes  int64             `json:"size_bytes,omitempty"`
	HostID     string            `json:"host_id,omitempty"`
	Envs       map[string]string `json:"envs"`
	Workdir    string            `json:"workdir,omitempty"`
	FailedStep *int32            `json:"failed_step,omitempty"`
	ExitCode   *int32            `json:"exit_code,omitempty"`
	Error      string            `json:"error,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	FinishedAt *time.Time        `json:"finished_at,omitempty"`
}

func viewBuild(b db.TemplateBuild) buildView {
	v := buildView{ID: id.Format(id.Build, b.ID), TemplateID: id.Format(id.Template, b.TemplateID), Status: b.Status, Spec: b.Spec,
		VCPUs: b.Vcpus, MemoryMiB: b.MemoryMib, Workdir: b.Workdir, FailedStep: b.FailedStep, ExitCode: b.ExitCode, Error: b.Error,
		CreatedAt: b.CreatedAt, FinishedAt: b.FinishedAt, Envs: map[string]string{}}
	if b.SnapshotID != nil {
		v.SnapshotID = id.Format(id.Snapshot, *b.SnapshotID)
	}
	_ = json.Unmarshal(b.Envs, &v.Envs)
	return v
}

type logView struct {
	Seq     int32     `json:"seq"`
	At      time.Time `json:"at"`
	Level   string    `json:"level"`
	Step    string    `json:"step,omitempty"`
	Message string    `json:"message"`
}

func viewLog(l db.TemplateBuildLog) logView {
	return logView{Seq: l.Seq, At: l.At, Level: l.Level, Step: l.Step, Message: l.Message}
}

func (a *API) createTemplate(w http.ResponseWriter, r *http.Request) {
	var b createTemplateBody
	if !a.decode(w, r, &b) {
		return
	}
	setAudit(r.Context(), "template.build", "template", b.Name)
	t, bl, err := a.svc.BuildTemplate(r.Context(), caller(r), service.CreateTemplateInput{Name: b.Name, Tags: b.Tags, VCPUs: b.VCPUs, MemoryMiB: b.MemoryMiB}, b.BuildSpec)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	setAudit(r.Context(), "template.build", "template", id.Format(id.Template, t.ID))
	writeJSON(w, http.StatusAccepted, viewBuild(bl))
}

type createBuildBody struct {
	VCPUs     int32 `json:"vcpus,omitempty"`
	MemoryMiB int32 `json:"memory_mib,omitempty"`
	service.BuildSpec
}

func (a *API) createBuild(w http.ResponseWriter, r *http.Request) {
	var b createBuildBody
	if !a.decode(w, r, &b) {
		return
	}
	ref := chi.URLParam(r, "templateID")
	t, err := a.svc.FindTemplate(r.Context(), caller(r), ref)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	setAudit(r.Context(), "template.build", "template", id.Format(id.Template, t.ID))
	_, bl, err := a.svc.BuildTemplate(r.Context(), caller(r), service.CreateTemplateInput{Name: t.Name, VCPUs: b.VCPUs, MemoryMiB: b.MemoryMiB}, b.BuildSpec)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, viewBuild(bl))
}

func (a *API) getTemplate(w http.ResponseWriter, r *http.Request) {
	t, err := a.svc.GetTemplate(r.Context(), caller(r), chi.URLParam(r, "templateID"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewTemplate(t))
}

func (a *API) deleteTemplate(w http.ResponseWriter, r *http.Request) {
	ref := chi.URLParam(r, "templateID")
	setAudit(r.Context(), "template.delete", "template", ref)
	if err := a.svc.DeleteTemplate(r.Context(), caller(r), ref); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listBuilds(w http.ResponseWriter, r *http.Request) {
	bs, err := a.svc.ListBuilds(r.Context(), caller(r), chi.URLParam(r, "templateID"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(bs, func(b db.TemplateBuild) buildView { return a.viewBuildWithSnapshot(r, b) }))
}

func (a *API) buildParam(w http.ResponseWriter, r *http.Request) (db.TemplateBuild, bool) {
	bid, ok := pathID(w, r, "buildID", id.Build)
	if !ok {
		return db.TemplateBuild{}, false
	}
	b, err := a.svc.GetBuild(r.Context(), caller(r), chi.URLParam(r, "templateID"), bid)
	if err != nil {
		a.fail(w, r, err)
		return b, false
	}
	return b, true
}

func (a *API) getBuild(w http.ResponseWriter, r *http.Request) {
	if b, ok := a.buildParam(w, r); ok {
		writeJSON(w, http.StatusOK, a.viewBuildWithSnapshot(r, b))
	}
}

// viewBuildWithSnapshot adds where the build's snapshot lives and its size.
func (a *API) viewBuildWithSnapshot(r *http.Request, b db.TemplateBuild) buildView {
	v := viewBuild(b)
	if b.SnapshotID != nil {
		if sn, err := a.svc.GetSnapshot(r.Context(), caller(r), *b.SnapshotID); err == nil {
			v.SizeBytes = sn.SizeBytes
			v.HostID = optString(optID(id.Host, sn.HostID))
		}
	}
	return v
}

func optString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (a *API) cancelBuild(w http.ResponseWriter, r *http.Request) {
	b, ok := a.buildParam(w, r)
	if !ok {
		return
	}
	setAudit(r.Context(), "template.cancel_build", "build", id.Format(id.Build, b.ID))
	b, err := a.svc.CancelBuild(r.Context(), caller(r), chi.URLParam(r, "templateID"), b.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, viewBuild(b))
}

// buildLogs writes the build's log from ?offset= as JSON lines; with
// ?follow=true it keeps the response open until the build ends.
func (a *API) buildLogs(w http.ResponseWriter, r *http.Request) {
	b, ok := a.buildParam(w, r)
	if !ok {
		return
	}
	offset := int32(0)
	if v := r.URL.Query().Get("offset"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "invalid_argument", "offset must be a non-negative integer")
			return
		}
		offset = int32(n)
	}
	follow := r.URL.Query().Get("follow") == "true"
	ref := chi.URLParam(r, "templateID")
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // log lines as they were: a > stays a >
	for {
		logs, err := a.svc.BuildLogs(r.Context(), caller(r), ref, b.ID, offset, 1000)
		if err != nil {
			return
		}
		for _, l := range logs {
			if enc.Encode(viewLog(l)) != nil {
				return
			}
			offset = l.Seq + 1
		}
		if flusher != nil {
			flusher.Flush()
		}
		if len(logs) > 0 {
			continue
		}
		if !follow {
			return
		}
		if b.Status != "waiting" && b.Status != "building" {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(300 * time.Millisecond):
		}
		// Read the status before the next page: lines written before the
		// build ended are all read by the pass after it is seen ended.
		if b, err = a.svc.GetBuild(r.Context(), caller(r), ref, b.ID); err != nil {
			return
		}
	}
}

func (a *API) templateFilesPresent(w http.ResponseWriter, r *http.Request) {
	ok, err := a.svc.HasTemplateFile(r.Context(), caller(r), chi.URLParam(r, "hash"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"present": ok})
}

// uploadTemplateFiles stores a build-context archive (tar or tar.gz of
// the files one COPY step names) under the hash of those files.
func (a *API) uploadTemplateFiles(w http.ResponseWriter, r *http.Request) {
	hash := chi.URLParam(r, "hash")
	setAudit(r.Context(), "template.upload", "files", hash)
	if err := cphttp.ReceiveTemplateFiles(w, r, a.svc, caller(r), hash); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

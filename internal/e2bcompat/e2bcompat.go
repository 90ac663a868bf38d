// Package e2bcompat serves the REST subset E2B's SDKs use (create, list,
// get, kill, pause, connect/resume, timeout, refresh, metrics, snapshots)
// under /e2b, mapped onto Wrenn's own model, auth and audit. An SDK user
// points E2B_API_URL at <control plane>/e2b and E2B_SANDBOX_URL at the
// sandbox proxy, with a Wrenn API key as E2B_API_KEY.
package e2bcompat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/internal/clientip"
	"git.omukk.dev/wrenn/sandbox/internal/cphttp"
	"git.omukk.dev/wrenn/sandbox/internal/wiretext"
	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// Prefix is where the API is mounted.
const Prefix = "/e2b"

type handler struct {
	svc     *service.Service
	log     *slog.Logger
	domain  string
	maxBody int64
	// publicURL (config public_url) prefixes the upload links handed out.
	publicURL string
}

// Mount adds the routes under Prefix on root, the control plane's root
// router (whose audit middleware records their calls).
func Mount(root chi.Router, svc *service.Service, domain string, maxBody int64, log *slog.Logger) {
	h := &handler{svc: svc, log: log, domain: domain, maxBody: maxBody, publicURL: svc.Config.PublicURL}
	root.Route(Prefix, func(r chi.Router) {
		r.Use(h.authenticate)
		r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusNotFound, "no such route in the E2B-compatible API")
		})
		r.Post("/sandboxes", h.create)
		r.Post("/v2/sandboxes", h.create)
		r.Get("/sandboxes", h.listV1)
		r.Get("/v2/sandboxes", h.list)
		r.Get("/sandboxes/{sandboxID}", h.get)
		r.Delete("/sandboxes/{sandboxID}", h.kill)
		r.Post("/sandboxes/{sandboxID}/pause", h.pause)
		r.Post("/sandboxes/{sandboxID}/resume", h.resume)
		r.Post("/sandboxes/{sandboxID}/connect", h.connect)
		r.Post("/v2/sandboxes/{sandboxID}/connect", h.connect)
		r.Post("/sandboxes/{sandboxID}/timeout", h.timeout)
		r.Put("/sandboxes/{sandboxID}/network", h.setNetwork)
		r.Post("/sandboxes/{sandboxID}/refreshes", h.refresh)
		r.Get("/sandboxes/{sandboxID}/metrics", h.metrics)
		r.Get("/sandboxes/{sandboxID}/logs", h.logsV1)
		r.Get("/v2/sandboxes/{sandboxID}/logs", h.logsV2)
		r.Get("/sandboxes/metrics", h.manyMetrics)
		r.Post("/sandboxes/{sandboxID}/snapshots", h.createSnapshot)
		r.Get("/snapshots", h.listSnapshots)
		r.Delete("/templates/{templateID}", h.deleteTemplateOr(h.deleteSnapshot))
		h.templateRoutes(r)
	})
}

// apiError is E2B's error body; the SDK reads 404 and 409 from code.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

var writeJSON = cphttp.WriteJSON

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apiError{Code: status, Message: msg})
}

// fail writes err with the status of its kind, in E2B's shape.
func (h *handler) fail(w http.ResponseWriter, err error) {
	status, _ := cphttp.Status(err)
	if status == http.StatusInternalServerError {
		h.log.Error("e2b api", "err", err)
	}
	writeError(w, status, cphttp.PublicMessage(err))
}

func (h *handler) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, err := h.uploadCaller(r); ok {
			if err != nil {
				writeError(w, http.StatusUnauthorized, err.Error())
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		cred := r.Header.Get("X-API-Key")
		if cred == "" {
			cred, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		}
		c, err := h.svc.Authenticate(r.Context(), strings.TrimSpace(cred))
		if err != nil {
			h.log.Warn("authentication failed", "api", "e2b", "ip", clientip.Of(r), "path", r.URL.Path, "key_prefix", keyPrefix(cred))
			writeError(w, http.StatusUnauthorized, err.Error())
			return
		}
		next.ServeHTTP(w, r.WithContext(withCaller(r.Context(), c)))
	})
}

func withCaller(ctx context.Context, c auth.Caller) context.Context {
	cphttp.NoteCaller(ctx, c)
	return auth.WithCaller(ctx, c)
}

func keyPrefix(k string) string {
	if len(k) > 12 {
		return k[:12] + "…"
	}
	return "(none or malformed)"
}

func caller(r *http.Request) auth.Caller {
	c, _ := auth.CallerFrom(r.Context())
	return c
}

// decode reads an optional JSON body.
func (h *handler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	return h.decodeChecked(w, r, v, nil)
}

// decodeChecked is decode with check run on a non-empty body first.
func (h *handler) decodeChecked(w http.ResponseWriter, r *http.Request, v any, check func([]byte) error) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body exceeds %d bytes", h.maxBody))
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return true
	}
	if check != nil {
		if err := check(body); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return false
		}
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return false
	}
	if err := wiretext.Check(v); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	return true
}

func sandboxParam(w http.ResponseWriter, r *http.Request, action string) (uuid.UUID, bool) {
	raw := chi.URLParam(r, "sandboxID")
	sid, err := id.Parse(id.Sandbox, raw)
	if err != nil {
		// An ID of another shape cannot name a sandbox: as E2B does, that
		// is "not found", which the SDK turns into SandboxNotFoundError.
		writeError(w, http.StatusNotFound, fmt.Sprintf("sandbox %q not found", raw))
		return sid, false
	}
	if action != "" {
		cphttp.SetAudit(r.Context(), action, "sandbox", raw)
	}
	return sid, true
}

// templateAliases are E2B's template names for Wrenn's images, used where
// no host has an image of E2B's name: code-interpreter-v1 is what
// @e2b/code-interpreter's Sandbox.create() asks for.
var templateAliases = map[string]string{"code-interpreter-v1": "code-interpreter"}

// imageMemoryMiB is the memory a sandbox of these images gets here (0 is
// the default): E2B's create has no memory field, its templates carry
// their size. Kernels with pandas and matplotlib loaded, and a context or
// two more, outgrow the default 256 MiB.
var imageMemoryMiB = map[string]int32{"code-interpreter": 1024}

// newSandbox is E2B's NewSandbox body.
type newSandbox struct {
	TemplateID          string            `json:"templateID"`
	Timeout             *int32            `json:"timeout"`
	Secure              *bool             `json:"secure"`
	AllowInternetAccess *bool             `json:"allow_internet_access"`
	Metadata            map[string]string `json:"metadata"`
	EnvVars             map[string]string `json:"envVars"`
	AutoPause           *bool             `json:"autoPause"`
	AutoResume          *struct {
		Enabled bool `json:"enabled"`
	} `json:"autoResume"`
	Network *networkBody `json:"network"`
}

// sandboxView is E2B's Sandbox (create and connect responses).
type sandboxView struct {
	TemplateID         string  `json:"templateID"`
	SandboxID          string  `json:"sandboxID"`
	ClientID           string  `json:"clientID"`
	EnvdVersion        string  `json:"envdVersion"`
	EnvdAccessToken    string  `json:"envdAccessToken,omitempty"`
	TrafficAccessToken *string `json:"trafficAccessToken"`
	Domain             *string `json:"domain"`
}

func (h *handler) view(sb service.Sandbox) sandboxView {
	v := sandboxView{TemplateID: sb.Template, SandboxID: id.Format(id.Sandbox, sb.ID), ClientID: "wrenn", EnvdVersion: sb.EnvdVersion, EnvdAccessToken: sb.EnvdAccessToken}
	if !sb.AllowPublicTraffic && sb.TrafficAccessToken != "" {
		v.TrafficAccessToken = &sb.TrafficAccessToken
	}
	if h.domain != "" {
		v.Domain = &h.domain
	}
	return v
}

func (h *handler) create(w http.ResponseWriter, r *http.Request) {
	var b newSandbox
	if !h.decodeChecked(w, r, &b, checkCreateFields) {
		return
	}
	cphttp.SetAudit(r.Context(), "sandbox.create", "sandbox", "")
	in := service.CreateSandboxInput{Metadata: b.Metadata, EnvVars: b.EnvVars, AllowInternet: b.AllowInternetAccess}
	if b.Timeout != nil {
		in.TimeoutSeconds = *b.Timeout
	}
	if b.AutoPause != nil && *b.AutoPause {
		in.OnTimeout = "pause"
	}
	if b.AutoResume != nil {
		in.AutoResume = b.AutoResume.Enabled
	}
	if b.Network != nil {
		if f := b.Network.unsupported(); f != "" {
			writeError(w, http.StatusBadRequest, f+" is not supported by Wrenn")
			return
		}
		if b.Network.AllowInternetAccess != nil {
			writeError(w, http.StatusBadRequest, "network.allow_internet_access: use allow_internet_access at the top level")
			return
		}
		in.AllowPublicTraffic = b.Network.AllowPublicTraffic
		in.Network = b.Network.policy()
	}
	c := caller(r)
	// templateID names a snapshot (by ID or name), or a template; the
	// SDK's default "base" is the default image where no host has "base".
	switch snap, err := h.svc.FindSnapshot(r.Context(), c, b.TemplateID); {
	case err == nil:
		in.SnapshotID = &snap.ID
	case !errors.Is(err, fault.NotFound):
		h.fail(w, err)
		return
	default:
		in.Template = b.TemplateID
		if in.Template == "" || in.Template == "base" && !h.svc.TemplateAvailable(r.Context(), "base") {
			in.Template = service.DefaultTemplate
		}
		if image, ok := templateAliases[in.Template]; ok && !h.svc.TemplateAvailable(r.Context(), in.Template) {
			in.Template = image
		}
		in.MemoryMiB = imageMemoryMiB[in.Template]
	}
	sb, err := h.svc.CreateSandbox(r.Context(), c, in)
	if err != nil {
		h.fail(w, err)
		return
	}
	cphttp.SetAudit(r.Context(), "sandbox.create", "sandbox", id.Format(id.Sandbox, sb.ID))
	writeJSON(w, http.StatusCreated, h.view(sb))
}

// detail is E2B's SandboxDetail and ListedSandbox.
type detail struct {
	TemplateID          string            `json:"templateID"`
	SandboxID           string            `json:"sandboxID"`
	ClientID            string            `json:"clientID"`
	StartedAt           time.Time         `json:"startedAt"`
	EndAt               time.Time         `json:"endAt"`
	CPUCount            int32             `json:"cpuCount"`
	MemoryMB            int32             `json:"memoryMB"`
	DiskSizeMB          int32             `json:"diskSizeMB"`
	State               string            `json:"state"`
	EnvdVersion         string            `json:"envdVersion"`
	EnvdAccessToken     string            `json:"envdAccessToken,omitempty"`
	AllowInternetAccess *bool             `json:"allowInternetAccess,omitempty"`
	Domain              *string           `json:"domain"`
	Metadata            map[string]string `json:"metadata"`
	Lifecycle           *lifecycle        `json:"lifecycle,omitempty"`
	VolumeMounts        []any             `json:"volumeMounts"`
	Network             *networkView      `json:"network,omitempty"`
}

type lifecycle struct {
	AutoResume bool   `json:"autoResume"`
	OnTimeout  string `json:"onTimeout"`
}

func (h *handler) detail(sb service.Sandbox) detail {
	meta := map[string]string{}
	_ = json.Unmarshal(sb.Metadata, &meta)
	state := "running"
	if sb.State == "paused" || sb.State == "pausing" {
		state = "paused"
	}
	end := sb.CreatedAt.Add(time.Duration(sb.TimeoutSeconds) * time.Second)
	if sb.ExpiresAt != nil {
		end = *sb.ExpiresAt
	}
	onTimeout := "kill"
	if sb.OnTimeout == "pause" {
		onTimeout = "pause"
	}
	d := detail{
		TemplateID: sb.Template, SandboxID: id.Format(id.Sandbox, sb.ID), ClientID: "wrenn", StartedAt: sb.CreatedAt, EndAt: end,
		CPUCount: sb.Vcpus, MemoryMB: sb.MemoryMib, DiskSizeMB: sb.DiskMib, State: state, EnvdVersion: sb.EnvdVersion,
		EnvdAccessToken: sb.EnvdAccessToken, AllowInternetAccess: &sb.AllowInternet, Metadata: meta,
		Lifecycle: &lifecycle{AutoResume: sb.AutoResume, OnTimeout: onTimeout}, VolumeMounts: []any{},
		Network: networkOf(sb),
	}
	if h.domain != "" {
		d.Domain = &h.domain
	}
	return d
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	sid, ok := sandboxParam(w, r, "")
	if !ok {
		return
	}
	sb, err := h.svc.GetSandbox(r.Context(), caller(r), sid)
	if err == nil && (sb.State == "stopped" || sb.State == "error") {
		err = fault.New(fault.NotFound, "sandbox "+id.Format(id.Sandbox, sid)+" not found (it has stopped)")
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, h.detail(sb))
}

// list is GET /v2/sandboxes: filters by metadata, state, template and
// start time, paginated by X-Next-Token.
func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := service.SandboxFilter{Template: q.Get("template"), Limit: 100}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, "limit must be 1 to 100")
			return
		}
		f.Limit = int32(n)
	}
	if tok := q.Get("nextToken"); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "invalid nextToken")
			return
		}
		f.Offset = int32(n)
	}
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		f.OldestFirst = true
	default:
		writeError(w, http.StatusBadRequest, "order must be asc or desc")
		return
	}
	if s := q.Get("startedAfter"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "startedAfter must be an RFC 3339 time")
			return
		}
		f.StartedAfter = &t
	}
	f.States = []string{"running", "paused", "pausing", "resuming"}
	if st := q.Get("state"); st != "" {
		f.States = nil
		for _, s := range strings.Split(st, ",") {
			switch s {
			case "running":
				f.States = append(f.States, "running", "resuming")
			case "paused":
				f.States = append(f.States, "paused", "pausing")
			default:
				writeError(w, http.StatusBadRequest, "state must be running and/or paused")
				return
			}
		}
	}
	if m := q.Get("metadata"); m != "" {
		meta, err := parseMetadata(m)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		f.Metadata = meta
	}
	sbs, err := h.svc.ListSandboxes(r.Context(), caller(r), f)
	if err != nil {
		h.fail(w, err)
		return
	}
	if int32(len(sbs)) == f.Limit {
		w.Header().Set("X-Next-Token", strconv.Itoa(int(f.Offset+f.Limit)))
	}
	out := make([]detail, len(sbs))
	for i, sb := range sbs {
		out[i] = h.detail(sb)
		out[i].EnvdAccessToken = ""
	}
	writeJSON(w, http.StatusOK, out)
}

// parseMetadata reads the SDK's metadata filter: k=v pairs joined by &,
// each key and value URL-encoded once more on top of the query encoding.
func parseMetadata(m string) (map[string]string, error) {
	out := map[string]string{}
	for _, pair := range strings.Split(m, "&") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, errors.New("metadata filters are key=value pairs joined by &")
		}
		dk, err1 := url.QueryUnescape(k)
		dv, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil || dk == "" {
			return nil, errors.New("metadata filter is not URL-encoded correctly")
		}
		out[dk] = dv
	}
	return out, nil
}

// listV1 is the older GET /sandboxes: every running or paused sandbox.
func (h *handler) listV1(w http.ResponseWriter, r *http.Request) {
	sbs, err := h.svc.ListSandboxes(r.Context(), caller(r), service.SandboxFilter{States: []string{"running", "paused", "pausing", "resuming"}})
	if err != nil {
		h.fail(w, err)
		return
	}
	out := make([]detail, len(sbs))
	for i, sb := range sbs {
		out[i] = h.detail(sb)
		out[i].EnvdAccessToken = ""
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) kill(w http.ResponseWriter, r *http.Request) {
	sid, ok := sandboxParam(w, r, "sandbox.destroy")
	if !ok {
		return
	}
	err := h.svc.DestroySandbox(r.Context(), caller(r), sid)
	if errors.Is(err, fault.Conflict) {
		// Already stopped: gone, as far as the SDK is concerned.
		err = fault.New(fault.NotFound, "sandbox "+id.Format(id.Sandbox, sid)+" not found")
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) pause(w http.ResponseWriter, r *http.Request) {
	sid, ok := sandboxParam(w, r, "sandbox.pause")
	if !ok {
		return
	}
	var b struct {
		Memory *bool `json:"memory"`
	}
	if !h.decode(w, r, &b) {
		return
	}
	if b.Memory != nil && !*b.Memory {
		writeError(w, http.StatusBadRequest, "pausing without memory (a filesystem-only snapshot) is not supported: pause keeps memory")
		return
	}
	sb, err := h.svc.GetSandbox(r.Context(), caller(r), sid)
	if err == nil && sb.State == "paused" {
		writeError(w, http.StatusConflict, "sandbox "+id.Format(id.Sandbox, sid)+" is already paused")
		return
	}
	if err == nil && sb.State != "running" && sb.State != "pausing" {
		err = fault.New(fault.NotFound, "sandbox "+id.Format(id.Sandbox, sid)+" is "+sb.State)
	}
	if err == nil {
		_, err = h.svc.PauseSandbox(r.Context(), caller(r), sid)
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type timeoutBody struct {
	Timeout *int32 `json:"timeout"`
}

// connect returns a running sandbox (200, its end moved to timeout from
// now if that is later, never earlier) or resumes a paused one (201).
func (h *handler) connect(w http.ResponseWriter, r *http.Request) {
	h.resumeOrConnect(w, r, true)
}

// resume is the older resume route: only a paused sandbox may be resumed.
func (h *handler) resume(w http.ResponseWriter, r *http.Request) {
	h.resumeOrConnect(w, r, false)
}

func (h *handler) resumeOrConnect(w http.ResponseWriter, r *http.Request, connect bool) {
	sid, ok := sandboxParam(w, r, "sandbox.resume")
	if !ok {
		return
	}
	var b timeoutBody
	if !h.decode(w, r, &b) {
		return
	}
	c := caller(r)
	sb, err := h.svc.GetSandbox(r.Context(), c, sid)
	if err != nil {
		h.fail(w, err)
		return
	}
	switch sb.State {
	case "running":
		if !connect {
			writeError(w, http.StatusConflict, "sandbox "+id.Format(id.Sandbox, sid)+" is already running")
			return
		}
		if b.Timeout != nil && *b.Timeout > 0 {
			if sb, err = h.svc.ExtendTimeout(r.Context(), c, sid, *b.Timeout); err != nil {
				h.fail(w, err)
				return
			}
			sb = h.svc.WithTokens(sb)
		}
		writeJSON(w, http.StatusOK, h.view(sb))
	case "paused":
		var timeout int32
		if b.Timeout != nil {
			timeout = *b.Timeout
		}
		sb, err := h.svc.ResumeSandbox(r.Context(), c, sid, timeout)
		if err != nil {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, h.view(sb))
	default:
		writeError(w, http.StatusNotFound, "sandbox "+id.Format(id.Sandbox, sid)+" not found (it is "+sb.State+")")
	}
}

func (h *handler) timeout(w http.ResponseWriter, r *http.Request) {
	var b timeoutBody
	h.extend(w, r, "sandbox.set_timeout", &b, func() (int32, bool) {
		if b.Timeout == nil {
			return 0, false
		}
		return *b.Timeout, true
	})
}

// refresh keeps a sandbox alive for duration seconds (default 60) from now.
func (h *handler) refresh(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Duration *int32 `json:"duration"`
	}
	h.extend(w, r, "sandbox.refresh", &b, func() (int32, bool) {
		if b.Duration == nil {
			return 60, true
		}
		return *b.Duration, true
	})
}

// extend decodes body and sets the sandbox's timeout to what seconds
// reads from it.
func (h *handler) extend(w http.ResponseWriter, r *http.Request, action string, body any, seconds func() (int32, bool)) {
	sid, ok := sandboxParam(w, r, action)
	if !ok || !h.decode(w, r, body) {
		return
	}
	n, ok := seconds()
	if !ok {
		writeError(w, http.StatusBadRequest, "timeout (seconds) is required")
		return
	}
	if _, err := h.svc.SetTimeout(r.Context(), caller(r), sid, n); err != nil {
		h.fail(w, notRunningIsNotFound(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// notRunningIsNotFound: E2B answers calls on a sandbox that is not running
// with 404.
func notRunningIsNotFound(err error) error {
	if errors.Is(err, fault.Conflict) {
		return fault.New(fault.NotFound, err.Error())
	}
	return err
}

type snapshotView struct {
	SnapshotID string   `json:"snapshotID"`
	Names      []string `json:"names"`
}

func (h *handler) createSnapshot(w http.ResponseWriter, r *http.Request) {
	sid, ok := sandboxParam(w, r, "snapshot.create")
	if !ok {
		return
	}
	var b struct {
		Name string `json:"name"`
	}
	if !h.decode(w, r, &b) {
		return
	}
	if b.Name == "" {
		b.Name = "snapshot-" + time.Now().UTC().Format("20060102-150405.000")
	}
	snap, err := h.svc.CreateSnapshot(r.Context(), caller(r), sid, b.Name)
	if err != nil {
		h.fail(w, err)
		return
	}
	cphttp.SetAudit(r.Context(), "snapshot.create", "snapshot", id.Format(id.Snapshot, snap.ID))
	writeJSON(w, http.StatusCreated, snapshotView{SnapshotID: id.Format(id.Snapshot, snap.ID), Names: []string{snap.Name}})
}

func (h *handler) listSnapshots(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	snaps, err := h.svc.ListSnapshots(r.Context(), caller(r))
	if err != nil {
		h.fail(w, err)
		return
	}
	out := []snapshotView{}
	for _, s := range snaps {
		if n := q.Get("name"); n != "" && s.Name != n {
			continue
		}
		if sb := q.Get("sandboxID"); sb != "" && (s.SourceSandboxID == nil || id.Format(id.Sandbox, *s.SourceSandboxID) != sb) {
			continue
		}
		out = append(out, snapshotView{SnapshotID: id.Format(id.Snapshot, s.ID), Names: []string{s.Name}})
	}
	writeJSON(w, http.StatusOK, out)
}

// deleteSnapshot is how the SDK deletes a snapshot (DELETE /templates/{id}).
func (h *handler) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	ref := chi.URLParam(r, "templateID")
	cphttp.SetAudit(r.Context(), "snapshot.delete", "snapshot", ref)
	snap, err := h.svc.FindSnapshot(r.Context(), caller(r), ref)
	if err == nil {
		err = h.svc.DeleteSnapshot(r.Context(), caller(r), snap.ID)
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

package cpapi_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

func mustContain(t *testing.T, r cptest.Response, want string) {
	t.Helper()
	if msg, _ := r.Map()["message"].(string); !strings.Contains(msg, want) {
		t.Fatalf("want %q in %s", want, r)
	}
}

// TestTemplateSpecsRefused: bad build specs get 400s naming what is wrong
// and leave no template behind.
func TestTemplateSpecsRefused(t *testing.T) {
	cp := startCP(t, nil)
	a := cp.Signup(t, "tpl-a@example.com")
	hash := strings.Repeat("ab", 32)
	run := []map[string]any{{"type": "RUN", "args": []string{"true"}}}
	for _, c := range []struct {
		name string
		body map[string]any
		want string
	}{
		{"no steps", map[string]any{"name": "x", "from_template": "minimal", "steps": []any{}}, "at least one step"},
		{"unknown base", map[string]any{"name": "x", "from_template": "no-such-base", "steps": run}, `unknown base "no-such-base"`},
		{"no base", map[string]any{"name": "x", "steps": run}, "needs a base"},
		{"bad image reference", map[string]any{"name": "x", "from_image": "Debian:12!", "steps": run}, "fromImage: image reference"},
		{"two bases", map[string]any{"name": "x", "from_image": "debian:12", "from_template": "minimal", "steps": run}, "one base"},
		{"credential without image", map[string]any{"name": "x", "from_template": "minimal", "from_image_registry": map[string]string{"username": "u", "password": "p"}, "steps": run}, "fromImageRegistry is a credential for fromImage"},
		{"half a credential", map[string]any{"name": "x", "from_image": "debian:12", "from_image_registry": map[string]string{"username": "u"}, "steps": run}, "both username and password"},
		{"escaping copy", map[string]any{"name": "x", "from_template": "minimal", "steps": []map[string]any{{"type": "COPY", "args": []string{"../secrets", "/x"}, "files_hash": hash}}}, "escapes the build context"},
		{"absolute copy", map[string]any{"name": "x", "from_template": "minimal", "steps": []map[string]any{{"type": "COPY", "args": []string{"/etc/passwd", "/x"}, "files_hash": hash}}}, "relative to the build context"},
		{"copy not uploaded", map[string]any{"name": "x", "from_template": "minimal", "steps": []map[string]any{{"type": "COPY", "args": []string{"app", "/x"}, "files_hash": hash}}}, "upload the archive first"},
		{"unknown step", map[string]any{"name": "x", "from_template": "minimal", "steps": []map[string]any{{"type": "VOLUME", "args": []string{"/x"}}}}, `unknown step type "VOLUME"`},
		{"bad env", map[string]any{"name": "x", "from_template": "minimal", "steps": []map[string]any{{"type": "ENV", "args": []string{"A"}}}}, "name, value pairs"},
		{"bad name", map[string]any{"name": "Bad Name", "from_template": "minimal", "steps": run}, "template name"},
		{"ready without start", map[string]any{"name": "x", "from_template": "minimal", "steps": run, "ready_cmd": "true"}, "readyCmd needs a startCmd"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := cp.Must(t, http.StatusBadRequest, "POST", "/v1/templates", a.Token, c.body)
			mustContain(t, r, c.want)
		})
	}
	cp.Must(t, http.StatusNotFound, "GET", "/v1/templates/x", a.Token, nil)

	// The build context: hashes are checked, an oversized archive is
	// refused, a stored one is seen by its team only.
	cp.Must(t, http.StatusBadRequest, "PUT", "/v1/templates/files/not-a-hash", a.Token, []byte("x"))
	big := cp.Must(t, http.StatusBadRequest, "PUT", "/v1/templates/files/"+hash, a.Token, make([]byte, service.MaxContextBytes+1))
	mustContain(t, big, "larger than")
	cp.Must(t, http.StatusOK, "GET", "/v1/templates/files/"+hash, a.Token, nil)
	cp.Must(t, http.StatusCreated, "PUT", "/v1/templates/files/"+hash, a.Token, []byte("archive"))
	if r := cp.Must(t, http.StatusOK, "GET", "/v1/templates/files/"+hash, a.Token, nil); r.Map()["present"] != true {
		t.Fatalf("after the upload: %s", r)
	}
	b := cp.Signup(t, "tpl-b@example.com")
	if r := cp.Must(t, http.StatusOK, "GET", "/v1/templates/files/"+hash, b.Token, nil); r.Map()["present"] != false {
		t.Fatalf("another team sees the files: %s", r)
	}
}

// TestTemplateFromImageV1 submits a build from an OCI image with
// registry credentials through /v1: it is accepted, the credentials are
// in neither the answer nor the stored spec, and with no host to pull
// the image the build fails saying so. GET answers from the stored row.
func TestTemplateFromImageV1(t *testing.T) {
	cp := startCP(t, nil)
	a := cp.Signup(t, "tpl-oci@example.com")
	const password = "pw-never-stored"
	r := cp.Must(t, http.StatusAccepted, "POST", "/v1/templates", a.Token, map[string]any{
		"name": "oci", "from_image": "registry.example.com/team/tool:1",
		"from_image_registry": map[string]string{"username": "robot", "password": password},
		"steps":               []map[string]any{{"type": "RUN", "args": []string{"true"}}},
	})
	if !strings.Contains(r.String(), `"from_image":"registry.example.com/team/tool:1"`) {
		t.Fatalf("the spec: %s", r)
	}
	m := r.Map()
	path := fmt.Sprintf("/v1/templates/%s/builds/%s", m["template_id"], m["id"])
	var got cptest.Response
	waitfor.True(t, 30*time.Second, "the build to fail without a host", func() bool {
		got = cp.Must(t, http.StatusOK, "GET", path, a.Token, nil)
		return got.Map()["status"] == "error"
	})
	if !strings.Contains(got.String(), "image registry.example.com/team/tool:1: no capacity: no healthy host") {
		t.Fatalf("the failed build: %s", got)
	}
	for _, body := range []string{r.String(), got.String()} {
		if strings.Contains(body, password) || strings.Contains(body, "from_image_registry") {
			t.Fatalf("the credentials were kept: %s", body)
		}
	}

	// A host reports an image made from an OCI image beside minimal: no
	// team lists it, starts a sandbox from it or builds on it.
	admin := cp.Admin(t, "tpl-oci-admin@example.com")
	reg := cp.RegisterHost(t, admin.Token, "oci-host", "127.0.0.1:1")
	made := guestimage.OCIImageName("sha256:" + strings.Repeat("ab", 32))
	cp.Must(t, http.StatusOK, "POST", "/v1/hosts/"+reg.HostID+"/heartbeat", reg.Secret, hostapi.Heartbeat{Address: "127.0.0.1:1",
		Capacity: hostapi.Capacity{Runtime: "gvisor", CPUs: 2, MemoryMiB: 4096, DiskFreeMiB: 10240, Templates: []string{"minimal", made}}})
	list := cp.Must(t, http.StatusOK, "GET", "/v1/templates", a.Token, nil).String()
	if !strings.Contains(list, `"minimal"`) || strings.Contains(list, made) {
		t.Fatalf("the templates list: %s", list)
	}
	sb := cp.Must(t, http.StatusBadRequest, "POST", "/v1/sandboxes", a.Token, map[string]any{"template": made})
	mustContain(t, sb, "start template builds only")
	base := cp.Must(t, http.StatusBadRequest, "POST", "/v1/templates", a.Token, map[string]any{"name": "reuse", "from_template": made, "steps": []map[string]any{{"type": "RUN", "args": []string{"true"}}}})
	mustContain(t, base, "unknown base")
}

// e2bDo calls the E2B-compatible API with an API key.
func e2bDo(t *testing.T, cp *cptest.CP, method, path, key string, body []byte, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, cp.URL+"/e2b"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(res.Body)
	return res.StatusCode, buf.String()
}

// TestE2BTemplateFlowWithoutHosts follows what the SDK's Template.build
// sends up to the build (which needs a host): request, upload link,
// upload by grant, start refused for a bad spec; another team sees and
// uses none of it; a waiting build can be cancelled.
func TestE2BTemplateFlowWithoutHosts(t *testing.T) {
	cp := startCP(t, nil)
	a := cp.Signup(t, "e2b-tpl-a@example.com")
	keyA := cp.APIKey(t, a)
	b := cp.Signup(t, "e2b-tpl-b@example.com")
	keyB := cp.APIKey(t, b)

	if code, _ := e2bDo(t, cp, "GET", "/templates/aliases/my-app", keyA, nil, nil); code != http.StatusNotFound {
		t.Fatalf("exists before any build: %d", code)
	}
	code, body := e2bDo(t, cp, "POST", "/v3/templates", keyA, []byte(`{"name":"my-app:v1","cpuCount":1,"memoryMB":512}`), nil)
	if code != http.StatusAccepted {
		t.Fatalf("request build: %d %s", code, body)
	}
	var req struct {
		TemplateID, BuildID string
		Tags                []string
	}
	decode(t, body, &req)
	if !strings.HasPrefix(req.TemplateID, "tpl-") || !strings.HasPrefix(req.BuildID, "bld-") || len(req.Tags) != 1 || req.Tags[0] != "v1" {
		t.Fatalf("request build answer: %s", body)
	}
	if code, _ := e2bDo(t, cp, "POST", "/v3/templates", keyA, []byte(`{"name":"x","minFreeDiskMb":100}`), nil); code != http.StatusBadRequest {
		t.Fatalf("minFreeDiskMb: %d", code)
	}
	if code, body := e2bDo(t, cp, "GET", "/templates/aliases/my-app", keyA, nil, nil); code != http.StatusOK || !strings.Contains(body, req.TemplateID) {
		t.Fatalf("exists: %d %s", code, body)
	}

	// Upload: the link works with its grant only, for its hash only.
	sum := sha256.Sum256([]byte("files"))
	hash := hex.EncodeToString(sum[:])
	code, body = e2bDo(t, cp, "GET", "/templates/"+req.TemplateID+"/files/"+hash, keyA, nil, nil)
	var link struct {
		Present bool
		URL     string
		Headers map[string]string
	}
	decode(t, body, &link)
	if code != http.StatusCreated || link.Present || link.URL == "" || len(link.Headers) != 1 {
		t.Fatalf("upload link: %d %s", code, body)
	}
	if strings.Contains(link.URL, link.Headers["X-Wrenn-Upload-Token"]) {
		t.Fatal("the upload grant is in the URL")
	}
	put := func(url string, hdr map[string]string) int {
		r, _ := http.NewRequest("PUT", url, strings.NewReader("tar bytes"))
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if c := put(link.URL, nil); c != http.StatusUnauthorized {
		t.Fatalf("upload without the grant: %d", c)
	}
	other := strings.Replace(link.URL, hash, strings.Repeat("0", 64), 1)
	if c := put(other, link.Headers); c != http.StatusUnauthorized {
		t.Fatalf("upload of other files with the grant: %d", c)
	}
	if c := put(link.URL, link.Headers); c != http.StatusCreated {
		t.Fatalf("upload: %d", c)
	}
	if _, body := e2bDo(t, cp, "GET", "/templates/"+req.TemplateID+"/files/"+hash, keyA, nil, nil); !strings.Contains(body, `"present":true`) {
		t.Fatalf("after the upload: %s", body)
	}

	// Another team: sees nothing, uses nothing.
	if code, _ := e2bDo(t, cp, "GET", "/templates/aliases/my-app", keyB, nil, nil); code != http.StatusNotFound {
		t.Fatalf("another team's exists: %d", code)
	}
	if code, _ := e2bDo(t, cp, "GET", "/templates/"+req.TemplateID+"/files/"+hash, keyB, nil, nil); code != http.StatusNotFound {
		t.Fatalf("another team's upload link: %d", code)
	}
	if code, _ := e2bDo(t, cp, "POST", "/v2/templates/"+req.TemplateID+"/builds/"+req.BuildID, keyB, []byte(`{"fromTemplate":"minimal","steps":[{"type":"RUN","args":["true"]}]}`), nil); code != http.StatusNotFound {
		t.Fatalf("another team starts the build: %d", code)
	}
	if code, _ := e2bDo(t, cp, "GET", "/templates/"+req.TemplateID+"/builds/"+req.BuildID+"/status", keyB, nil, nil); code != http.StatusNotFound {
		t.Fatalf("another team's build status: %d", code)
	}
	cp.Must(t, http.StatusNotFound, "GET", "/v1/templates/"+req.TemplateID, b.Token, nil)
	cp.Must(t, http.StatusNotFound, "DELETE", "/v1/templates/my-app", b.Token, nil)

	// Fields Wrenn cannot honour are named.
	code, body = e2bDo(t, cp, "POST", "/v2/templates/"+req.TemplateID+"/builds/"+req.BuildID, keyA, []byte(`{"fromImage":"x","fromImageRegistry":{"type":"aws"}}`), nil)
	if code != http.StatusBadRequest || !strings.Contains(body, "fromImageRegistry") {
		t.Fatalf("fromImageRegistry: %d %s", code, body)
	}
	code, body = e2bDo(t, cp, "GET", "/templates/"+req.TemplateID+"/builds/"+req.BuildID+"/status?logsOffset=0", keyA, nil, nil)
	if code != http.StatusOK || !strings.Contains(body, `"status":"waiting"`) || !strings.Contains(body, `"logEntries":[]`) {
		t.Fatalf("status: %d %s", code, body)
	}

	// Cancel a waiting build over /v1.
	r := cp.Must(t, http.StatusAccepted, "POST", "/v1/templates/"+req.TemplateID+"/builds/"+req.BuildID+"/cancel", a.Token, nil)
	if r.Map()["status"] != "cancelled" {
		t.Fatalf("cancel: %s", r)
	}
	cp.Must(t, http.StatusConflict, "POST", "/v1/templates/"+req.TemplateID+"/builds/"+req.BuildID+"/cancel", a.Token, nil)
	code, body = e2bDo(t, cp, "GET", "/templates/"+req.TemplateID+"/builds/"+req.BuildID+"/status", keyA, nil, nil)
	if code != http.StatusOK || !strings.Contains(body, `"status":"error"`) || !strings.Contains(body, "cancelled") {
		t.Fatalf("status after cancel: %d %s", code, body)
	}
	cp.Must(t, http.StatusNoContent, "DELETE", "/v1/templates/my-app", a.Token, nil)
	cp.Must(t, http.StatusNotFound, "GET", "/v1/templates/my-app", a.Token, nil)
}

func decode(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}

// TestPlatformTemplates: an admin publishes one of their team's templates;
// every team then sees it and resolves its name (here to "no ready build":
// a build needs a host, tests/e2e starts sandboxes from one), but only
// its own team changes or deletes it, and only admins publish.
func TestPlatformTemplates(t *testing.T) {
	cp := startCP(t, nil)
	admin := cp.Admin(t, "tpl-admin@example.com")
	keyAdmin := cp.APIKey(t, admin)
	user := cp.Signup(t, "tpl-user@example.com")
	keyUser := cp.APIKey(t, user)

	// A template with a waiting build (the E2B flow's first call).
	if code, body := e2bDo(t, cp, "POST", "/v3/templates", keyAdmin, []byte(`{"name":"shared-app"}`), nil); code != http.StatusAccepted {
		t.Fatalf("request build: %d %s", code, body)
	}
	if code, body := e2bDo(t, cp, "POST", "/v3/templates", keyUser, []byte(`{"name":"mine"}`), nil); code != http.StatusAccepted {
		t.Fatalf("request build: %d %s", code, body)
	}
	cp.Must(t, http.StatusNotFound, "GET", "/v1/templates/shared-app", user.Token, nil)
	mustContain(t, cp.Must(t, http.StatusForbidden, "POST", "/v1/templates/mine/publish", user.Token, nil), "platform admin")

	r := cp.Must(t, http.StatusOK, "POST", "/v1/templates/shared-app/publish", admin.Token, nil)
	if r.Map()["public"] != true || r.Map()["team_id"] != admin.TeamID {
		t.Fatalf("publish: %s", r)
	}
	tplID, _ := r.Map()["id"].(string)

	// Another team sees it, by name and ID, in its list after its own.
	for _, ref := range []string{"shared-app", tplID} {
		if g := cp.Must(t, http.StatusOK, "GET", "/v1/templates/"+ref, user.Token, nil); g.Map()["public"] != true {
			t.Fatalf("get %s as another team: %s", ref, g)
		}
	}
	var list []struct {
		Name   string `json:"name"`
		Public bool   `json:"public"`
		TeamID string `json:"team_id"`
	}
	decode(t, string(cp.Must(t, http.StatusOK, "GET", "/v1/templates", user.Token, nil).Body), &list)
	var names []string
	for _, l := range list {
		names = append(names, l.Name)
		if l.Name == "shared-app" && (!l.Public || l.TeamID != admin.TeamID) {
			t.Fatalf("listed: %+v", l)
		}
	}
	if !strings.Contains(strings.Join(names, ","), "mine,shared-app") {
		t.Fatalf("list: %v", names)
	}
	// A sandbox from it resolves to the platform template (which has no
	// ready build yet), not to an unknown image.
	mustContain(t, cp.Must(t, http.StatusNotFound, "POST", "/v1/sandboxes", user.Token, map[string]any{"template": "shared-app"}), "template shared-app has no ready build")

	// Only its team changes it.
	mustContain(t, cp.Must(t, http.StatusForbidden, "DELETE", "/v1/templates/shared-app", user.Token, nil), "only its team can delete it")
	cp.Must(t, http.StatusForbidden, "POST", "/v1/templates/shared-app/unpublish", user.Token, nil)
	if code, body := e2bDo(t, cp, "POST", "/templates/tags", keyUser, []byte(`{"target":"shared-app","tags":["x"]}`), nil); code != http.StatusForbidden {
		t.Fatalf("another team tags it: %d %s", code, body)
	}

	// Unpublished, it is the admin team's own again.
	if r := cp.Must(t, http.StatusOK, "POST", "/v1/templates/shared-app/unpublish", admin.Token, nil); r.Map()["public"] != false {
		t.Fatalf("unpublish: %s", r)
	}
	cp.Must(t, http.StatusNotFound, "GET", "/v1/templates/shared-app", user.Token, nil)
	cp.Must(t, http.StatusNoContent, "DELETE", "/v1/templates/shared-app", admin.Token, nil)
}

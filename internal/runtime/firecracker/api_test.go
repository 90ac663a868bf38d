package firecracker

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"sigs.k8s.io/yaml"
)

// specPath finds shared/reference beside the repository.
func specPath(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	for dir := filepath.Dir(file); dir != "/"; dir = filepath.Dir(dir) {
		p := filepath.Join(dir, "..", "shared", "reference", "firecracker", "firecracker-api.yaml")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("shared/reference/firecracker/firecracker-api.yaml is not beside the repository")
	return ""
}

func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	raw, err := os.ReadFile(specPath(t))
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	var v2 openapi2.T
	if err := json.Unmarshal(js, &v2); err != nil {
		t.Fatal(err)
	}
	v3, err := openapi2conv.ToV3(&v2)
	if err != nil {
		t.Fatal(err)
	}
	v3.Servers = openapi3.Servers{{URL: "http://localhost/"}}
	return v3
}

// Every request the driver sends is a route of the spec, with a body that
// validates against the route's schema.
func TestRequestsValidateAgainstFirecrackerAPI(t *testing.T) {
	spec := loadSpec(t)
	router, err := gorillamux.NewRouter(spec)
	if err != nil {
		t.Fatal(err)
	}
	calls := BootCalls(2, 512, "/img/vmlinux", "/img/initramfs.cpio", "console=ttyS0 wrenn.ip=169.254.0.21/30", "/sb/disk.ext4", "tap0", "02:fc:00:00:00:01", map[string]any{"wrenn": map[string]any{"accessTokenHash": "abc"}})
	calls = append(calls, ShutdownCall(), ResumeCall(), LoadCall("/sb/vmstate", "/sb/uffd.sock"))
	calls = append(calls, SnapshotCalls("/sb/vmstate", "/sb/mem.full", true)...)
	calls = append(calls, SnapshotCalls("/sb/vmstate", "/sb/mem.diff", false)...)
	for _, c := range calls {
		body, _ := json.Marshal(c.Body)
		req, _ := http.NewRequest(c.Method, "http://localhost"+c.Path, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Errorf("%s %s: not in the API: %v", c.Method, c.Path, err)
			continue
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: &openapi3filter.Options{MultiError: true}}
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s %s %s: %v", c.Method, c.Path, body, err)
		}
	}
	// The validator itself rejects what the spec forbids.
	bad := []Call{
		{http.MethodPut, "/machine-config", map[string]any{"vcpu_count": 0, "mem_size_mib": 128}},
		{http.MethodPut, "/boot-source", map[string]any{"boot_args": "x"}},
		{http.MethodPut, "/actions", InstanceActionInfo{ActionType: "Explode"}},
		{http.MethodPut, "/drives/rootfs", map[string]any{"drive_id": "rootfs"}},
		{http.MethodPatch, "/vm", VM{State: "Frozen"}},
		{http.MethodPut, "/snapshot/create", SnapshotCreateParams{MemFilePath: "/m", SnapshotPath: "/s", SnapshotType: "Partial"}},
		{http.MethodPut, "/snapshot/load", map[string]any{"mem_backend": MemoryBackend{BackendType: "Uffd", BackendPath: "/s"}}},
	}
	for _, c := range bad {
		body, _ := json.Marshal(c.Body)
		req, _ := http.NewRequest(c.Method, "http://localhost"+c.Path, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatal(err)
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route}
		if err := openapi3filter.ValidateRequest(context.Background(), in); err == nil {
			t.Errorf("invalid %s %s %s passed validation", c.Method, c.Path, body)
		}
	}
	_ = url.Values{}
}

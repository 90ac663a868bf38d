package sdk

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"testing"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/pkg/filesig"
)

// TestMain runs the examples only against a real Wrenn (tests/e2e's
// TestSDKExamples starts one and sets the variables); elsewhere they are
// compiled and the unit tests run.
func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(EnvAPIURL) == "" || os.Getenv(EnvSandboxURL) == "" {
		if f := flag.Lookup("test.run"); f != nil && f.Value.String() == "" {
			_ = flag.Set("test.run", "^Test")
			fmt.Fprintln(os.Stderr, "sdk: examples not run: WRENN_API_URL and WRENN_SANDBOX_URL name no Wrenn (tests/e2e TestSDKExamples runs them)")
		}
	}
	os.Exit(m.Run())
}

func TestNewReadsTheEnvironment(t *testing.T) {
	t.Setenv(EnvAPIURL, "")
	t.Setenv(EnvAPIKey, "")
	t.Setenv(EnvSandboxURL, "")
	t.Setenv(EnvSandboxDomain, "")
	t.Setenv(EnvE2BAPIURL, "")
	t.Setenv(EnvE2BAPIKey, "e2b_abc")
	t.Setenv(EnvE2BSandboxURL, "")
	t.Setenv(EnvE2BDomain, "")
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if c.Protocol() != ProtocolE2B || c.APIURL() != "https://api.e2b.app" || c.domain != "e2b.app" || c.apiKey != "e2b_abc" {
		t.Errorf("E2B defaults: %+v", c)
	}
	t.Setenv(EnvAPIURL, "http://127.0.0.1:8080/")
	t.Setenv(EnvSandboxURL, "http://127.0.0.1:8081")
	if c, err = New(); err != nil || c.Protocol() != ProtocolWrenn || c.APIURL() != "http://127.0.0.1:8080" || c.SandboxURL() != "http://127.0.0.1:8081" {
		t.Errorf("Wrenn: %+v %v", c, err)
	}
	if c, err = New(WithoutEnv(), WithAPIURL("http://x")); err != nil || c.apiKey != "" || c.SandboxURL() != "" {
		t.Errorf("WithoutEnv: %+v %v", c, err)
	}
	if _, err := New(WithoutEnv()); !errors.Is(err, ErrInvalid) {
		t.Errorf("no URL: %v", err)
	}
	// A sandbox needs a way to reach it.
	if _, err := c.newEnvd("sb-1", "", "", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("no sandbox URL: %v", err)
	}
	e, err := c.newEnvd("sb-1", "", "example.com", "")
	if err != nil || e.base != "https://49983-sb-1.example.com" || e.byHeader {
		t.Errorf("domain routing: %+v %v", e, err)
	}
}

func TestErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		kind   error
	}{
		{404, `{"code":"not_found","message":"sandbox x not found"}`, ErrNotFound},
		{404, `{"code":404,"message":"sandbox x not found"}`, ErrNotFound},
		{401, `{"code":"unauthenticated","message":"bad key"}`, ErrAuth},
		{403, `{"code":"forbidden","message":"admins only"}`, ErrAuth},
		{409, `{"code":"conflict","message":"paused"}`, ErrConflict},
		{503, `{"code":"no_capacity","message":"no host has room"}`, ErrCapacity},
		{503, `{"code":"unavailable","message":"database down"}`, ErrUnavailable},
		{507, `{"code":507,"message":"not enough disk space"}`, ErrCapacity},
		{502, `<html>bad gateway</html>`, ErrUnavailable},
		{400, `{"code":"invalid_argument","message":"bad"}`, ErrInvalid},
	} {
		err := httpError("op", tc.status, []byte(tc.body))
		if !errors.Is(err, tc.kind) {
			t.Errorf("%d %s: %v is not %v", tc.status, tc.body, err, tc.kind)
		}
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != tc.status {
			t.Errorf("%d: not an APIError with the status: %#v", tc.status, err)
		}
	}
	if err := httpError("op", 500, []byte(`{"code":"internal","message":"boom"}`)); errors.Is(err, ErrNotFound) || err.Error() != "op: boom (500 internal)" {
		t.Errorf("internal: %v", err)
	}
	for code, kind := range map[connect.Code]error{connect.CodeNotFound: ErrNotFound, connect.CodeUnavailable: ErrUnavailable, connect.CodeResourceExhausted: ErrCapacity,
		connect.CodeDeadlineExceeded: ErrTimeout, connect.CodeAlreadyExists: ErrConflict, connect.CodeUnauthenticated: ErrAuth} {
		if err := connectError("op", connect.NewError(code, errors.New("x"))); !errors.Is(err, kind) {
			t.Errorf("%v: %v", code, err)
		}
	}
}

func TestSignedURLs(t *testing.T) {
	c, _ := New(WithoutEnv(), WithAPIURL("http://cp"), WithSandboxURL("http://proxy"))
	sb, err := c.sandbox(SandboxInfo{ID: "sb-1"}, "tok", "")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(sb.AsUser("user").Files.DownloadURL("/tmp/a b", URLOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Host != "proxy" || u.Path != "/files" || q.Get("path") != "/tmp/a b" || q.Get("username") != "user" ||
		q.Get("signature") != filesig.Sign("/tmp/a b", filesig.Read, "user", "tok", 0) || q.Has("signature_expiration") {
		t.Errorf("download URL: %s", u)
	}
	u, _ = url.Parse(sb.Files.UploadURL("x", URLOptions{Expires: 60e9}))
	q = u.Query()
	if q.Get("signature_expiration") == "" || q.Has("username") ||
		q.Get("signature") != filesig.Sign("x", filesig.Write, "", "tok", mustAtoi(t, q.Get("signature_expiration"))) {
		t.Errorf("upload URL: %s", u)
	}
}

func mustAtoi(t *testing.T, s string) int64 {
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

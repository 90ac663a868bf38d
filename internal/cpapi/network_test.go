package cpapi_test

import (
	"strings"
	"testing"
)

// Network policies are checked before any host is asked: what Wrenn
// cannot honour, and entries it cannot read, are refused with a 400 that
// names them, on /e2b and /v1, at create and on PUT .../network.
func TestNetworkPolicyRefusals(t *testing.T) {
	cp := startCP(t, nil)
	key := cp.APIKey(t, cp.Signup(t, "n@example.com"))
	sb := "/sandboxes/sb-00000000000000000000000000000000/network"
	for _, c := range []struct {
		method, path string
		body         any
		want         string
	}{
		{"POST", "/e2b/sandboxes", map[string]any{"network": map[string]any{"egressProxy": map[string]string{"address": "p:1080"}}}, "network.egressProxy"},
		{"POST", "/e2b/sandboxes", map[string]any{"network": map[string]any{"rules": map[string]any{"x.test": []any{}}}}, "network.rules"},
		{"POST", "/e2b/sandboxes", map[string]any{"network": map[string]any{"maskRequestHost": "x"}}, "network.maskRequestHost"},
		{"POST", "/e2b/sandboxes", map[string]any{"network": map[string]any{"httpsPorts": []int{8443}}}, "network.httpsPorts"},
		{"POST", "/e2b/sandboxes", map[string]any{"network": map[string]any{"denyOut": []string{"example.com"}}}, `network.denyOut[0] \"example.com\": domain names are not supported`},
		{"POST", "/e2b/sandboxes", map[string]any{"network": map[string]any{"allowOut": []string{"a b"}}}, `network.allowOut[0] \"a b\"`},
		{"PUT", "/e2b" + sb, map[string]any{"egressProxy": map[string]string{"address": "p:1080"}}, "network.egressProxy"},
		{"PUT", "/e2b" + sb, map[string]any{"denyOut": []string{"2001:db8::/32"}}, "IPv4 only"},
		{"POST", "/v1/sandboxes", map[string]any{"network": map[string]any{"deny_out": []string{"example.com"}}}, "network.deny_out[0]"},
		{"PUT", "/v1" + sb, map[string]any{"allow_out": []string{"*"}}, `network.allow_out[0] \"*\"`},
	} {
		r, err := cp.Do(c.method, c.path, key, c.body)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != 400 || !strings.Contains(r.String(), c.want) {
			t.Errorf("%s %s %v: %s; want 400 naming %s", c.method, c.path, c.body, r, c.want)
		}
	}
}

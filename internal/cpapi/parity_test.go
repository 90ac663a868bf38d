package cpapi_test

import (
	"strings"
	"testing"
)

// TestCreateRefusesWhatItCannotHonour: a create that asks for something
// Wrenn does not do (an egress proxy, per-domain rules, a volume, an MCP gateway) is refused
// with a 400 naming the field, on both APIs, before any host is asked.
func TestCreateRefusesWhatItCannotHonour(t *testing.T) {
	cp := startCP(t, nil)
	key := cp.APIKey(t, cp.Signup(t, "parity@example.com"))
	for _, c := range []struct {
		path  string
		body  map[string]any
		named string
	}{
		{"/e2b/sandboxes", map[string]any{"templateID": "base", "network": map[string]any{"egressProxy": map[string]string{"address": "p:1080"}}}, "network.egressProxy"},
		{"/e2b/v2/sandboxes", map[string]any{"templateID": "base", "network": map[string]any{"rules": map[string]any{"api.example.com": []any{map[string]any{}}}}}, "network.rules"},
		{"/e2b/v2/sandboxes", map[string]any{"templateID": "base", "network": map[string]any{"maskRequestHost": "h"}}, "network.maskRequestHost"},
		{"/e2b/v2/sandboxes", map[string]any{"templateID": "base", "volumeMounts": []any{map[string]string{"name": "v", "path": "/v"}}}, "volumeMounts"},
		{"/e2b/v2/sandboxes", map[string]any{"templateID": "base", "mcp": map[string]any{"x": map[string]any{}}}, "mcp"},
		{"/e2b/v2/sandboxes", map[string]any{"templateID": "base", "autoPause": true, "autoPauseMemory": false}, "autoPauseMemory"},
		{"/v1/sandboxes", map[string]any{"network": map[string]any{"denyOut": []string{"8.8.8.8"}}}, "denyOut"},
	} {
		r, err := cp.Do("POST", c.path, key, c.body)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != 400 || !strings.Contains(string(r.Body), c.named) {
			t.Errorf("POST %s %v: want a 400 naming %s, got %s", c.path, c.body, c.named, r)
		}
	}
	// What it honours gets past the check (no host here: 503).
	r, _ := cp.Do("POST", "/e2b/v2/sandboxes", key, map[string]any{"templateID": "base", "autoPause": true, "autoPauseMemory": true,
		"network": map[string]any{"allowPublicTraffic": false, "allowOut": []string{"example.com"}, "denyOut": []string{"0.0.0.0/0"}}, "volumeMounts": []any{}})
	if r.Status == 400 {
		t.Errorf("an honoured create was refused: %s", r)
	}
}

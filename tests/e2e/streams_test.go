package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
)

// TestLongStreamsUnderLoad (issue 15, bug 6): twenty streams at once into
// one sandbox — terminal bursts, 256 MiB downloads, commands printing for
// a minute — through the control plane's sandbox proxy and the agent's
// proxy into envd, on gVisor and on QEMU, driven by the official SDK;
// every stream must arrive whole.
func TestLongStreamsUnderLoad(t *testing.T) {
	sdkDir := requireSDK(t)
	requireVMs(t)
	requireRunsc(t)
	for _, rt := range []string{"gvisor", "qemu"} {
		t.Run(rt, func(t *testing.T) {
			pg := requirePostgres(t)
			cp, err := pg.Start(context.Background(), cptest.Options{Tune: fastClocks})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cp.Stop() })
			admin := cp.Admin(t, "admin@example.com")
			// Registered first, so it runs once the agent has stopped.
			var agent *cpAgent
			t.Cleanup(func() {
				if agent != nil {
					assertNothingRunning(t, agent.stateDir)
				}
			})
			agent = startCPAgent(t, cp, admin.Token, 7, rt)
			key := cp.APIKey(t, admin)
			// Room for the 256 MiB file, on disk and (gVisor keeps its
			// root's changes in memory) in memory.
			sb := sandboxOf(t, cp.Must(t, 201, "POST", "/v1/sandboxes", key, map[string]any{
				"template": "minimal", "memory_mib": 1024, "disk_mib": 2048, "timeout_seconds": 1200}))
			defer cp.Do("DELETE", "/v1/sandboxes/"+sb.ID, key, nil)

			cmd := exec.Command("node", "--test", "streams.test.mjs")
			cmd.Dir = sdkDir
			cmd.Env = append(withoutE2B(os.Environ()), "E2B_API_URL="+cp.URL+"/e2b", "E2B_SANDBOX_URL="+cp.ProxyURL, "E2B_API_KEY="+key,
				"WRENN_STREAMS_SANDBOX="+sb.ID)
			out, err := cmd.CombinedOutput()
			t.Logf("%s", out)
			if err != nil || !bytes.Contains(out, []byte("# fail 0")) || !bytes.Contains(out, []byte("# skipped 0")) {
				t.Fatalf("streams through the proxies on %s: %v", rt, err)
			}
		})
	}
}

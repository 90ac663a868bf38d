package e2e

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	"git.omukk.dev/wrenn/sandbox/internal/network/outsidetest"
)

// TestEgressPolicySDK runs tests/e2b/egress.test.mjs (the official E2B
// SDK: denyOut an address, allowOut a domain with all traffic denied by
// TLS server name and HTTP Host, updateNetwork on a running sandbox,
// getInfo().network, pause and resume, refused fields) against a Wrenn
// whose guests resolve names through a DNS server of the test's, with web
// servers in an "outside" network namespace, on gVisor and on QEMU. Every
// sandbox is gone at the end, and with it every rule, namespace and proxy
// listener of its egress policy.
func TestEgressPolicySDK(t *testing.T) {
	sdkDir := requireSDK(t)
	for i, rt := range []string{"gvisor", "qemu"} {
		t.Run(rt, func(t *testing.T) {
			out := outsidetest.Start(t, 1+i, 3)
			a, b, c := out.Servers[0], out.Servers[1], out.Servers[2]
			out.SetNames(map[string]netip.Addr{"allowed.test": a, "other.test": b})
			st := startStack(t)
			h := startCPAgent(t, st.cp, st.admin.Token, 5, rt, "--dns", out.DNSAddr.String())
			// No sandbox, namespace, rule or process left (the proxy
			// listeners live in the slots' namespaces).
			t.Cleanup(func() { (&cpStack{cp: st.cp, admin: st.admin, hosts: []*cpAgent{h}}).checkNothingLeft(t) })
			key := st.key(t, "egress-"+rt+"@example.com")
			cmd := exec.Command("node", "--test", "--test-concurrency=1", "egress.test.mjs")
			cmd.Dir = sdkDir
			cmd.Env = append(os.Environ(), "E2B_API_URL="+st.cp.URL+"/e2b", "E2B_SANDBOX_URL="+st.cp.ProxyURL, "E2B_API_KEY="+key,
				"EGRESS_A="+a.String(), "EGRESS_B="+b.String(), "EGRESS_C="+c.String())
			res, err := cmd.CombinedOutput()
			if err != nil || !bytes.Contains(res, []byte("# fail 0")) || !bytes.Contains(res, []byte("# skipped 0")) {
				t.Fatalf("E2B SDK egress tests on %s: %v\n%s", rt, err, res)
			}
		})
	}
}

package e2e

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"strings"
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
			var hellos []string
			for _, name := range []string{"allowed.test", "other.test"} {
				h, err := outsidetest.ClientHello(name)
				if err != nil {
					t.Fatal(err)
				}
				hellos = append(hellos, "EGRESS_HELLO_"+strings.ReplaceAll(name, ".", "_")+"="+hex.EncodeToString(h))
			}
			cmd := exec.Command("node", "--test", "--test-concurrency=1", "egress.test.mjs")
			cmd.Dir = sdkDir
			cmd.Env = append(os.Environ(), "E2B_API_URL="+st.cp.URL+"/e2b", "E2B_SANDBOX_URL="+st.cp.ProxyURL, "E2B_API_KEY="+key,
				"EGRESS_A="+a.String(), "EGRESS_B="+b.String(), "EGRESS_C="+c.String())
			cmd.Env = append(cmd.Env, hellos...)
			res, err := cmd.CombinedOutput()
			if err != nil || !bytes.Contains(res, []byte("# fail 0")) || !bytes.Contains(res, []byte("# skipped 0")) {
				t.Fatalf("E2B SDK egress tests on %s: %v\n%s", rt, err, res)
			}
			if rt == "gvisor" {
				checkEgressV1(t, st, key, a, b)
			}
		})
	}
}

// checkEgressV1 is the same policy through /v1: network at create, shown
// in the sandbox, replaced by PUT .../network.
func checkEgressV1(t *testing.T, st *cpStack, key string, a, b netip.Addr) {
	t.Helper()
	sb := sandboxOf(t, st.cp.Must(t, 201, "POST", "/v1/sandboxes", key, map[string]any{"template": "minimal", "network": map[string]any{"deny_out": []string{b.String()}}}))
	defer st.cp.Must(t, 204, "DELETE", "/v1/sandboxes/"+sb.ID, key, nil)
	get := func(addr netip.Addr) string {
		x := st.cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/exec", key, map[string]any{"cmd": "/bin/sh", "args": []string{"-c", "out=$(timeout 8 bash -c 'exec 3<>/dev/tcp/" + addr.String() + "/80 && printf \"GET / HTTP/1.0\\r\\nHost: " + addr.String() + "\\r\\n\\r\\n\" >&3 && cat <&3' 2>/dev/null | tail -n 1); echo ${out:-refused}"}}).Map()
		return strings.TrimSpace(x["stdout"].(string))
	}
	if got := get(b); got != "refused" {
		t.Errorf("/v1 deny_out %s: got %q", b, got)
	}
	if got := get(a); got != outsidetest.Answer(a, a.String()) {
		t.Errorf("/v1 other address %s: got %q", a, got)
	}
	view := st.cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID, key, nil).Map()
	if n := view["network"].(map[string]any); len(n["deny_out"].([]any)) != 1 || n["deny_out"].([]any)[0] != b.String() {
		t.Errorf("/v1 view network: %v", view["network"])
	}
	st.cp.Must(t, 200, "PUT", "/v1/sandboxes/"+sb.ID+"/network", key, map[string]any{})
	if got := get(b); got != outsidetest.Answer(b, b.String()) {
		t.Errorf("/v1 after clearing the policy: got %q", got)
	}
}

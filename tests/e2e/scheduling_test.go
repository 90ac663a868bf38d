package e2e

import (
	"context"
	"syscall"
	"testing"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// A host whose network slots are all in use says so as no capacity, and
// the control plane places the sandbox on the next host instead of
// failing the create. Host A has one slot, taken by a sandbox made on the
// agent directly (the control plane does not count it), so A is the
// emptier host in the control plane's eyes and is tried first.
func TestCreateMovesOnWhenSlotsRunOut(t *testing.T) {
	requireVMs(t)
	requireRunsc(t)
	pg := requirePostgres(t)
	cp, err := pg.Start(context.Background(), cptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cp.Stop() }()
	admin := cp.Admin(t, "admin@example.com")
	key := cp.APIKey(t, cp.Signup(t, "user@example.com"))

	b := startCPAgent(t, cp, admin.Token, 4, "gvisor")
	onB := sandboxOf(t, cp.Must(t, 201, "POST", "/v1/sandboxes", key, nil))
	if onB.HostID != b.hostID {
		t.Fatalf("the only host is %s, the sandbox is on %s", b.hostID, onB.HostID)
	}
	a := startCPAgent(t, cp, admin.Token, 5, "gvisor", "--network-slots", "1")
	create(t, a.agent, "sb-filler0", nil)
	_, err = a.client.CreateSandbox(context.Background(), connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: "sb-filler1", Template: "minimal"}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted || fault.KindOf(err) != fault.NoCapacity {
		t.Fatalf("a create beyond host A's slots: %v (code %s, kind %s), want no capacity", err, connect.CodeOf(err), fault.KindOf(err))
	}

	moved := sandboxOf(t, cp.Must(t, 201, "POST", "/v1/sandboxes", key, nil))
	if moved.HostID != b.hostID || moved.State != "running" {
		t.Fatalf("created on %s (%s), want host B %s", moved.HostID, moved.State, b.hostID)
	}
	if !a.logged("all 1 network slots are in use") {
		t.Error("host A was not tried first (its log follows)")
	}
	cp.Must(t, 200, "POST", "/v1/sandboxes/"+moved.ID+"/exec", key, map[string]any{"cmd": "true"})

	for _, id := range []string{onB.ID, moved.ID} {
		cp.Must(t, 204, "DELETE", "/v1/sandboxes/"+id, key, nil)
	}
	if _, err := a.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "sb-filler0"})); err != nil {
		t.Fatal(err)
	}
	a.stop(t, syscall.SIGTERM)
	b.stop(t, syscall.SIGTERM)
	assertNoLeftovers(t, a.stateDir)
	assertNoLeftovers(t, b.stateDir)
}

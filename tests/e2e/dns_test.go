package e2e

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"connectrpc.com/connect"
	"golang.org/x/net/dns/dnsmessage"

	"git.omukk.dev/wrenn/sandbox/internal/network"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// serveDNS is a name server on addr (UDP) in namespace ns that knows the
// A records of names (fully qualified) and answers every other question
// with no records.
func serveDNS(t *testing.T, ns, addr string, names map[string]netip.Addr) {
	t.Helper()
	var pc net.PacketConn
	if err := network.InNamespace(ns, func() (err error) {
		pc, err = net.ListenPacket("udp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			if answer, err := answerDNS(buf[:n], names); err == nil {
				_, _ = pc.WriteTo(answer, from)
			}
		}
	}()
}

func answerDNS(query []byte, names map[string]netip.Addr) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if a, ok := names[strings.ToLower(q.Name.String())]; ok && q.Type == dnsmessage.TypeA && q.Class == dnsmessage.ClassINET {
		rh := dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60}
		if err := b.AResource(rh, dnsmessage.AResource{A: a.As4()}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// A sandbox resolves names through the name servers the agent is given
// (--dns): here one on the stand-in for the internet, which only the
// sandbox's resolver would ask.
func TestAgentGuestResolvesNames(t *testing.T) {
	requireVMs(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		host, _, _ := net.SplitHostPort(outside(t))
		serveDNS(t, outsideNS, net.JoinHostPort(host, "53"), map[string]netip.Addr{"probe.wrenn.test.": netip.MustParseAddr("10.99.0.77")})
		a := startAgent(t, "", "--runtime", rt, "--dns", host)
		create(t, a, "dns1", func(r *pb.CreateSandboxRequest) { r.AllowInternet = true })
		out := string(execIn(t, a, "dns1", "cat /etc/resolv.conf; nslookup probe.wrenn.test").Stdout)
		if !strings.Contains(out, "nameserver "+host+"\n") {
			t.Fatalf("the guest's resolv.conf does not name %s:\n%s", host, out)
		}
		if _, after, ok := strings.Cut(out, "Name:"); !ok || !strings.Contains(after, "probe.wrenn.test") || !strings.Contains(after, "10.99.0.77") {
			t.Fatalf("the guest did not resolve probe.wrenn.test to 10.99.0.77:\n%s", out)
		}
		if _, err := a.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "dns1"})); err != nil {
			t.Fatal(err)
		}
		a.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})
}

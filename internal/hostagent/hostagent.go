// Package hostagent is wrenn-agent: it serves the agent's Connect API
// (hostagent.v1) over the sandbox manager, behind bearer-secret
// authentication, and proxies traffic into sandboxes. Its files follow
// its roles: the RPC handlers for sandbox lifecycle (sandboxes.go) and
// for calls into a sandbox (guest.go, over envdclient's process and file
// API), the report of the host's capacity (capacity.go), registration
// and heartbeats with the control plane (controlplane.go, over cpclient),
// the guest proxy (proxy.go), and Run, which puts them together.
package hostagent

import (
	"crypto/subtle"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/sandbox"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	"git.omukk.dev/wrenn/sandbox/proto/hostagent/v1/hostagentv1connect"
)

// Service implements HostAgentService.
type Service struct {
	hostagentv1connect.UnimplementedHostAgentServiceHandler
	M      *sandbox.Manager
	HostID string
	Log    *slog.Logger
	// ImagesDir, Envd and Init are where PrepareImage puts the images
	// it builds and the binaries it installs in them.
	ImagesDir, Envd, Init string
}

// Handler is the service; its caller authenticates requests (mutual TLS
// with the control plane, or requireBearer for an agent run alone).
// Every error a method returns leaves as its fault kind
// (fault.Interceptor), so the handlers return the manager's and envd's
// errors as they are.
func Handler(svc *Service, opts ...connect.HandlerOption) (string, http.Handler) {
	return hostagentv1connect.NewHostAgentServiceHandler(svc, append([]connect.HandlerOption{connect.WithInterceptors(fault.Interceptor()),
		connect.WithReadMaxBytes(hostapi.MaxAgentRequest)}, opts...)...)
}

// requireBearer refuses a call without the agent's secret, answering in
// the caller's protocol (Connect, gRPC or gRPC-Web).
func requireBearer(secret string, log *slog.Logger, next http.Handler) http.Handler {
	want := []byte("Bearer " + secret)
	errw := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			log.Warn("unauthenticated agent call", "remote", r.RemoteAddr, "path", r.URL.Path)
			_ = errw.Write(w, r, fault.ToConnect(fault.New(fault.Unauthenticated, "a valid agent bearer token is required")))
			return
		}
		next.ServeHTTP(w, r)
	})
}

package service

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/internal/agentclient"
	"git.omukk.dev/wrenn/sandbox/internal/cpauth"
	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/proto/hostagent/v1/hostagentv1connect"
)

// HostSecretPrefix starts the credential a host receives at registration.
const HostSecretPrefix = "wrh_"

// HostTokenPrefix starts a one-time host registration token.
const HostTokenPrefix = "wrt_"

// agentPool caches one client per host, over mutual TLS; a changed
// address (re-registration, a heartbeat from elsewhere) replaces it, and
// deleting the host drops it.
type agentPool struct {
	mu      sync.Mutex
	clients map[uuid.UUID]pooledAgent
}

type pooledAgent struct {
	address    string
	client     hostagentv1connect.HostAgentServiceClient
	rpc, proxy *http.Transport
}

func (p pooledAgent) close() {
	p.rpc.CloseIdleConnections()
	p.proxy.CloseIdleConnections()
}

func (p *agentPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.clients {
		c.close()
	}
	p.clients = nil
}

// drop forgets a host's client and closes its idle connections.
func (p *agentPool) drop(host uuid.UUID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[host]; ok {
		c.close()
		delete(p.clients, host)
	}
}

// pooled returns host h's client and transports.
func (s *Service) pooled(h db.Host) (pooledAgent, error) {
	if h.Status == "unreachable" {
		return pooledAgent{}, errf(ErrUnavailable, "host %s is unreachable (no heartbeat for over %s); its sandboxes come back when it does", id.Format(id.Host, h.ID), s.Config.HeartbeatTimeout)
	}
	if h.Address == "" {
		return pooledAgent{}, errf(ErrUnavailable, "host %s has not registered yet", id.Format(id.Host, h.ID))
	}
	if s.CA == nil {
		return pooledAgent{}, errors.New("the host CA is not loaded")
	}
	p := &s.agents
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[h.ID]; ok && c.address == h.Address {
		return c, nil
	} else if ok {
		c.close()
	}
	if p.clients == nil {
		p.clients = map[uuid.UUID]pooledAgent{}
	}
	rpc, proxy := s.agentTransports(h)
	c := pooledAgent{address: h.Address, rpc: rpc, proxy: proxy, client: agentclient.NewTLS(h.Address, rpc)}
	p.clients[h.ID] = c
	return c, nil
}

// agent returns a client for host h.
func (s *Service) agent(h db.Host) (hostagentv1connect.HostAgentServiceClient, error) {
	c, err := s.pooled(h)
	return c.client, err
}

// hostAgent loads a host and returns its client.
func (s *Service) hostAgent(ctx context.Context, hostID *uuid.UUID) (db.Host, hostagentv1connect.HostAgentServiceClient, error) {
	if hostID == nil {
		return db.Host{}, nil, errf(ErrUnavailable, "the sandbox has no host (its host was deleted)")
	}
	h, err := s.Q.GetHost(ctx, *hostID)
	if err != nil {
		return h, nil, notFound(err, "host")
	}
	c, err := s.agent(h)
	return h, c, err
}

// CreateHostToken issues a one-time registration token (admins).
func (s *Service) CreateHostToken(ctx context.Context, c auth.Caller) (string, time.Time, error) {
	if err := requireAdmin(c); err != nil {
		return "", time.Time{}, err
	}
	tok := cpauth.NewToken(HostTokenPrefix)
	exp := time.Now().Add(s.Config.HostTokenTTL)
	var by *uuid.UUID
	if c.UserID != uuid.Nil {
		by = &c.UserID
	}
	_, err := s.Q.CreateHostToken(ctx, db.CreateHostTokenParams{ID: id.New(), Hash: cpauth.HashSecret(tok), CreatedBy: by, ExpiresAt: exp})
	return tok, exp, err
}

// RegisterHost exchanges a registration token and a certificate request
// (the agent's key stays on the host) for a host ID and a certificate for
// it, which the host presents to the control plane and serves its API
// with. Only a control plane serving plain HTTP (development: `wrenn
// dev`) also gives a secret, since there a host cannot present its
// certificate; it is empty otherwise.
func (s *Service) RegisterHost(ctx context.Context, token, name, address string, csr []byte) (db.Host, HostCredentials, error) {
	if name == "" {
		name = address
	}
	if err := validName("host name", name, 200); err != nil {
		return db.Host{}, HostCredentials{}, err
	}
	if address == "" || strings.ContainsAny(address, " /") {
		return db.Host{}, HostCredentials{}, errf(ErrInvalid, "address must be the agent's host:port as the control plane reaches it")
	}
	var creds HostCredentials
	params := db.CreateHostParams{ID: id.New(), Name: name, Address: address}
	if s.Config.PlainHTTP {
		creds.Secret = cpauth.NewToken(HostSecretPrefix)
		params.SecretHash, params.SecretEnc = cpauth.HashSecret(creds.Secret), s.Keys.Seal(creds.Secret)
	}
	var h db.Host
	err := s.inTx(ctx, func(q *db.Queries) error {
		var err error
		h, err = q.CreateHost(ctx, params)
		if err != nil {
			return err
		}
		_, err = q.UseHostToken(ctx, db.UseHostTokenParams{Hash: cpauth.HashSecret(token), HostID: &h.ID})
		if errors.Is(err, pgx.ErrNoRows) {
			return errf(ErrUnauthorized, "registration token invalid, expired or already used; create a new one (POST /v1/hosts/tokens)")
		}
		if err != nil {
			return err
		}
		if len(csr) == 0 {
			return errf(ErrInvalid, "csr is required: the agent sends a certificate request for its key (an agent older than the control plane must be upgraded)")
		}
		// A refused request rolls the token's use back.
		creds.Certificate, err = s.issueHostCert(ctx, q, h, csr)
		return err
	})
	if err != nil {
		return db.Host{}, HostCredentials{}, err
	}
	creds.CA = string(s.CA.CertPEM())
	return h, creds, nil
}

// HostCredentials are what registration gives a host.
type HostCredentials struct {
	// Certificate (PEM) names the host; CA (PEM) is the root that signed
	// it and the control plane's own certificate.
	Certificate, CA string
	// Secret is only for a control plane serving plain HTTP.
	Secret string
}

// AuthenticateHost checks a host's secret: only a control plane serving
// plain HTTP (development: `wrenn dev`) accepts it; over HTTPS hosts
// present their certificates (AuthenticateHostCert).
func (s *Service) AuthenticateHost(ctx context.Context, host uuid.UUID, secret string) (db.Host, error) {
	h, err := s.Q.GetHost(ctx, host)
	if errors.Is(err, pgx.ErrNoRows) {
		return h, errf(ErrUnauthorized, "unknown host or wrong secret")
	}
	if err != nil {
		return h, err
	}
	if subtle.ConstantTimeCompare(h.SecretHash, cpauth.HashSecret(secret)) != 1 {
		return h, errf(ErrUnauthorized, "unknown host or wrong secret")
	}
	return h, nil
}

// RecordHeartbeat stores a host's report; an unreachable or new host
// becomes ready. Templates it has become built-in templates.
func (s *Service) RecordHeartbeat(ctx context.Context, h db.Host, hb hostapi.Heartbeat) (db.Host, error) {
	if hb.Address == "" {
		hb.Address = h.Address
	}
	if hb.Templates == nil {
		hb.Templates = []string{}
	}
	var out db.Host
	err := s.inTx(ctx, func(q *db.Queries) error {
		var err error
		out, err = q.HostHeartbeat(ctx, db.HostHeartbeatParams{
			ID: h.ID, Address: hb.Address, Runtime: hb.Runtime, Accelerator: hb.Accelerator, Cpus: hb.CPUs,
			MemoryMib: hb.MemoryMiB, DiskFreeMib: hb.DiskFreeMiB, MaxSandboxes: hb.MaxSandboxes,
			SandboxCount: hb.Sandboxes, CommittedVcpus: hb.CommittedVCPUs, CommittedMemoryMib: hb.CommittedMemoryMiB,
			Templates: hb.Templates,
		})
		if err != nil {
			return err
		}
		for _, t := range hb.Templates {
			if hostOnlyImage(t) {
				continue
			}
			if err := q.UpsertTemplate(ctx, db.UpsertTemplateParams{TeamID: id.PlatformTeam, Name: t}); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && h.Status == "unreachable" {
		s.Log.Info("host reachable again", "host", id.Format(id.Host, h.ID))
	}
	return out, err
}

// ListHosts lists hosts (admins).
func (s *Service) ListHosts(ctx context.Context, c auth.Caller) ([]db.Host, error) {
	if err := requireAdmin(c); err != nil {
		return nil, err
	}
	return s.Q.ListHosts(ctx)
}

// GetHost returns one host (admins).
func (s *Service) GetHost(ctx context.Context, c auth.Caller, host uuid.UUID) (db.Host, error) {
	if err := requireAdmin(c); err != nil {
		return db.Host{}, err
	}
	h, err := s.Q.GetHost(ctx, host)
	return h, notFound(err, "host")
}

// DrainHost stops new sandboxes from being placed on a host; its running
// sandboxes are left alone.
func (s *Service) DrainHost(ctx context.Context, c auth.Caller, host uuid.UUID) (db.Host, error) {
	if err := requireAdmin(c); err != nil {
		return db.Host{}, err
	}
	h, err := s.Q.SetHostStatus(ctx, db.SetHostStatusParams{ID: host, Status: "draining"})
	return h, notFound(err, "host")
}

// DeleteHost removes a host. A host with live sandboxes is refused unless
// force is set, which marks those sandboxes stopped (for a host that is
// gone for good).
func (s *Service) DeleteHost(ctx context.Context, c auth.Caller, host uuid.UUID, force bool) error {
	if err := requireAdmin(c); err != nil {
		return err
	}
	err := s.inTx(ctx, func(q *db.Queries) error {
		live, err := q.ListActiveSandboxesOnHost(ctx, &host)
		if err != nil {
			return err
		}
		if len(live) > 0 && !force {
			return errf(ErrConflict, "host has %d live sandboxes: drain it and destroy them, or delete with force=true if the host is gone for good", len(live))
		}
		for _, sb := range live {
			if _, err := q.SetSandboxState(ctx, db.SetSandboxStateParams{ID: sb.ID, State: "stopped", Error: "its host was deleted"}); err != nil {
				return err
			}
		}
		n, err := q.DeleteHost(ctx, host)
		if err == nil && n == 0 {
			return errf(ErrNotFound, "host not found")
		}
		return err
	})
	if err == nil {
		s.agents.drop(host)
	}
	return err
}

// hostOnlyImage reports whether a host's image was made from an OCI
// image for a template build. Such images are no team's to list or start
// from (one may come from a private registry, pulled with a team's
// credentials): only that build's sandbox starts from it, and sandboxes
// from the template are clones of its snapshot.
func hostOnlyImage(name string) bool {
	return strings.HasPrefix(name, hostapi.OCIImagePrefix)
}

// placement is a host that can take a sandbox, with its current load.
type placement struct {
	host db.Host
	load float64
}

// candidates lists the healthy hosts that have template (any host for
// "") and room for a sandbox of memMiB, least loaded first. Load counts
// the database's live sandboxes, which is current, rather than the last
// heartbeat's, which lags behind creates made since.
//
// diskMiB, when the request names one, must fit in what the host reports
// it can still promise; a disk left to the template's default is fitted
// by the host itself.
func (s *Service) candidates(ctx context.Context, template string, memMiB, diskMiB int32) ([]db.Host, error) {
	hosts, err := s.Q.ListHosts(ctx)
	if err != nil {
		return nil, err
	}
	loads, err := s.Q.HostLoads(ctx)
	if err != nil {
		return nil, err
	}
	byHost := map[uuid.UUID]db.HostLoadsRow{}
	for _, l := range loads {
		byHost[l.HostID] = l
	}
	fresh := time.Now().Add(-s.Config.HeartbeatTimeout)
	var ok []placement
	var healthy, withTemplate, withDisk int
	for _, h := range hosts {
		if h.Status != "ready" || h.LastHeartbeatAt == nil || h.LastHeartbeatAt.Before(fresh) {
			continue
		}
		healthy++
		if template != "" && !slices.Contains(h.Templates, template) {
			continue
		}
		withTemplate++
		if int64(diskMiB) > h.DiskFreeMib {
			continue
		}
		withDisk++
		l := byHost[h.ID]
		if h.MaxSandboxes > 0 && l.Sandboxes >= h.MaxSandboxes {
			continue
		}
		if h.MemoryMib > 0 && l.MemoryMib+int64(memMiB) > h.MemoryMib {
			continue
		}
		load := float64(l.MemoryMib+int64(memMiB)) / float64(max(h.MemoryMib, 1))
		ok = append(ok, placement{h, load})
	}
	if len(ok) == 0 {
		switch {
		case healthy == 0:
			return nil, errf(ErrNoCapacity, "no capacity: no healthy host is registered (start an agent with --control-plane, or check GET /v1/hosts)")
		case withTemplate == 0:
			return nil, errf(ErrNoCapacity, "no capacity: no healthy host has template %q", template)
		case withDisk == 0:
			return nil, errf(ErrNoCapacity, "no capacity: no host with template %q has %d MiB of disk to give", template, diskMiB)
		default:
			return nil, errf(ErrNoCapacity, "no capacity: every host with template %q is full (%d MiB requested)", template, memMiB)
		}
	}
	sort.SliceStable(ok, func(i, j int) bool { return ok[i].load < ok[j].load })
	out := make([]db.Host, len(ok))
	for i, p := range ok {
		out[i] = p.host
	}
	return out, nil
}

// ListTemplates lists the templates the caller's team can use.
func (s *Service) ListTemplates(ctx context.Context, c auth.Caller) ([]db.Template, error) {
	if err := requireTeam(c); err != nil {
		return nil, err
	}
	return s.Q.ListTemplates(ctx, c.TeamID)
}

// ProxyTarget is where the sandbox proxy sends a request for a sandbox.
type ProxyTarget struct {
	Sandbox db.Sandbox
	// Address is the sandbox's agent; Transport reaches it (mutual TLS,
	// HTTP/1.1).
	Address   string
	Transport http.RoundTripper
}

// ProxyTarget finds any team's sandbox for the proxy; the caller decides
// what its state allows.
func (s *Service) ProxyTarget(ctx context.Context, sid uuid.UUID) (ProxyTarget, error) {
	sb, err := s.Q.GetSandboxAny(ctx, sid)
	if err != nil {
		return ProxyTarget{}, notFound(err, "sandbox")
	}
	if sb.HostID == nil {
		return ProxyTarget{Sandbox: sb}, errf(ErrUnavailable, "the sandbox has no host")
	}
	h, err := s.Q.GetHost(ctx, *sb.HostID)
	if err != nil {
		return ProxyTarget{Sandbox: sb}, notFound(err, "host")
	}
	if h.Status == "unreachable" {
		return ProxyTarget{Sandbox: sb}, errf(ErrUnavailable, "the sandbox's host is unreachable")
	}
	c, err := s.pooled(h)
	if err != nil {
		return ProxyTarget{Sandbox: sb}, err
	}
	return ProxyTarget{Sandbox: sb, Address: h.Address, Transport: c.proxy}, nil
}

// TrafficToken is a sandbox's token for its non-public ports.
func (s *Service) TrafficToken(sb db.Sandbox) string {
	t, _ := s.Keys.Open(sb.TrafficTokenEnc)
	return t
}

// EnvdToken is a sandbox's envd access token.
func (s *Service) EnvdToken(sb db.Sandbox) string {
	t, _ := s.Keys.Open(sb.EnvdTokenEnc)
	return t
}

// TemplateAvailable reports whether a healthy host has template.
func (s *Service) TemplateAvailable(ctx context.Context, template string) bool {
	hosts, err := s.candidates(ctx, template, 0, 0)
	return err == nil && len(hosts) > 0
}

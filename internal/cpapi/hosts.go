package cpapi

import (
	"net/http"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cphttp"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

func (a *API) createHostToken(w http.ResponseWriter, r *http.Request) {
	platformAudit(r.Context())
	setAudit(r.Context(), "host.create_token", "host_token", "")
	tok, exp, err := a.svc.CreateHostToken(r.Context(), caller(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"token": tok, "expires_at": exp})
}

func (a *API) registerHost(w http.ResponseWriter, r *http.Request) {
	var b hostapi.RegisterRequest
	if !a.decode(w, r, &b) {
		return
	}
	setActor(r.Context(), "host", b.Address, id.PlatformTeam)
	setAudit(r.Context(), "host.register", "host", "")
	h, creds, err := a.svc.RegisterHost(r.Context(), b.Token, b.Name, b.Address, []byte(b.CSR))
	if err != nil {
		a.log.Warn("host registration failed", "ip", clientIP(r), "address", b.Address, "reason", err.Error())
		a.fail(w, r, err)
		return
	}
	setActor(r.Context(), "host", id.Format(id.Host, h.ID), id.PlatformTeam)
	setAudit(r.Context(), "host.register", "host", id.Format(id.Host, h.ID))
	a.log.Info("host registered", "host", id.Format(id.Host, h.ID), "name", h.Name, "address", h.Address)
	writeJSON(w, http.StatusCreated, hostapi.RegisterResponse{HostID: id.Format(id.Host, h.ID),
		HostCertificate: hostapi.HostCertificate{Certificate: creds.Certificate, CA: creds.CA}, Secret: creds.Secret})
}

// authenticateHost authenticates a host's own request for the host in
// the path: by the client certificate it presented (verified against the
// host CA by the TLS layer, checked here against PostgreSQL on every
// request), or, only on a control plane serving plain HTTP (development:
// `wrenn dev`), by its secret. It answers the failure itself.
func (a *API) authenticateHost(w http.ResponseWriter, r *http.Request) (db.Host, bool) {
	return a.authenticateHostFor(w, r, false)
}

// authenticateHostFor is authenticateHost; firstCert also takes the
// secret of a host that has no certificate yet, over HTTPS too: a host
// registered before mutual TLS gets its first certificate that way, once.
func (a *API) authenticateHostFor(w http.ResponseWriter, r *http.Request, firstCert bool) (db.Host, bool) {
	hid, ok := pathID(w, r, "hostID", id.Host)
	if !ok {
		return db.Host{}, false
	}
	var h db.Host
	var err error
	switch {
	case r.TLS != nil && len(r.TLS.PeerCertificates) > 0:
		h, err = a.svc.AuthenticateHostCert(r.Context(), hid, r.TLS.PeerCertificates[0])
	case a.cfg.PlainHTTP:
		secret, _ := credential(r, false)
		h, err = a.svc.AuthenticateHost(r.Context(), hid, secret)
	case firstCert:
		secret, _ := credential(r, false)
		h, err = a.svc.AuthenticateHostWithoutCert(r.Context(), hid, secret)
	default:
		err = fault.New(fault.Unauthenticated, "a host authenticates with its certificate (mutual TLS); none was presented")
	}
	if err != nil {
		a.log.Warn("host authentication failed", "ip", clientIP(r), "host", id.Format(id.Host, hid), "reason", err.Error())
		a.fail(w, r, err)
		return h, false
	}
	return h, true
}

func (a *API) heartbeat(w http.ResponseWriter, r *http.Request) {
	cphttp.SkipAudit(r.Context())
	h, ok := a.authenticateHost(w, r)
	if !ok {
		return
	}
	var hb hostapi.Heartbeat
	if !a.decode(w, r, &hb) {
		return
	}
	if _, err := a.svc.RecordHeartbeat(r.Context(), h, hb); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, hostapi.HeartbeatResponse{IntervalSeconds: max(1, int(a.cfg.HeartbeatTimeout/3/time.Second))})
}

// renewHostCert issues a host a new certificate for a new key (POST
// /v1/hosts/{hostID}/certificate), authenticated as a host's report is,
// or for a host registered before mutual TLS, its first by its secret.
func (a *API) renewHostCert(w http.ResponseWriter, r *http.Request) {
	h, ok := a.authenticateHostFor(w, r, true)
	if !ok {
		return
	}
	setActor(r.Context(), "host", id.Format(id.Host, h.ID), id.PlatformTeam)
	setAudit(r.Context(), "host.renew_certificate", "host", id.Format(id.Host, h.ID))
	var b hostapi.RenewRequest
	if !a.decode(w, r, &b) {
		return
	}
	cert, err := a.svc.RenewHostCert(r.Context(), h, []byte(b.CSR))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, hostapi.HostCertificate{Certificate: cert, CA: string(a.svc.CA.CertPEM())})
}

func (a *API) listHosts(w http.ResponseWriter, r *http.Request) {
	hs, err := a.svc.ListHosts(r.Context(), caller(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(hs, viewHost))
}

func (a *API) getHost(w http.ResponseWriter, r *http.Request) {
	hid, ok := pathID(w, r, "hostID", id.Host)
	if !ok {
		return
	}
	h, err := a.svc.GetHost(r.Context(), caller(r), hid)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewHost(h))
}

func (a *API) drainHost(w http.ResponseWriter, r *http.Request) {
	hid, ok := pathID(w, r, "hostID", id.Host)
	if !ok {
		return
	}
	platformAudit(r.Context())
	setAudit(r.Context(), "host.drain", "host", id.Format(id.Host, hid))
	h, err := a.svc.DrainHost(r.Context(), caller(r), hid)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewHost(h))
}

func (a *API) deleteHost(w http.ResponseWriter, r *http.Request) {
	hid, ok := pathID(w, r, "hostID", id.Host)
	if !ok {
		return
	}
	platformAudit(r.Context())
	setAudit(r.Context(), "host.delete", "host", id.Format(id.Host, hid))
	if err := a.svc.DeleteHost(r.Context(), caller(r), hid, r.URL.Query().Get("force") == "true"); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

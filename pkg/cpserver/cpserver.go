// Package cpserver is the whole wrenn-cp bootstrap: configuration,
// database and migrations, services, routes, extensions, background jobs
// and graceful shutdown. cmd/control-plane is a few lines around Run, and
// so is any distribution that adds extensions.
package cpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"git.omukk.dev/wrenn/sandbox/db/migrations"
	"git.omukk.dev/wrenn/sandbox/internal/clientip"
	"git.omukk.dev/wrenn/sandbox/internal/cpapi"
	"git.omukk.dev/wrenn/sandbox/internal/cpauth"
	"git.omukk.dev/wrenn/sandbox/internal/cpmetrics"
	"git.omukk.dev/wrenn/sandbox/internal/e2bcompat"
	"git.omukk.dev/wrenn/sandbox/internal/metrics"
	"git.omukk.dev/wrenn/sandbox/internal/sandboxproxy"
	"git.omukk.dev/wrenn/sandbox/internal/tlsreload"
	"git.omukk.dev/wrenn/sandbox/internal/webui"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/cpextension"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
	"git.omukk.dev/wrenn/sandbox/pkg/settings"
)

type options struct {
	cfg        *config.Config
	extensions []cpextension.Extension
	log        *slog.Logger
	listener   net.Listener
	proxyLn    net.Listener
	proxyTLS   *tls.Config
	proxyTLSLn []net.Listener
	metricsLn  net.Listener
	ready      func(addr string)
}

// Option configures Run.
type Option func(*options)

// WithConfig uses cfg instead of reading the environment.
func WithConfig(cfg config.Config) Option { return func(o *options) { o.cfg = &cfg } }

// WithExtensions registers extensions, in order.
func WithExtensions(ext ...cpextension.Extension) Option {
	return func(o *options) { o.extensions = append(o.extensions, ext...) }
}

// WithLogger logs to log instead of JSON on stderr.
func WithLogger(log *slog.Logger) Option { return func(o *options) { o.log = log } }

// WithListener serves on ln instead of listening on the configured address.
func WithListener(ln net.Listener) Option { return func(o *options) { o.listener = ln } }

// WithProxyListener serves the sandbox proxy on ln instead of listening
// on the configured proxy address.
func WithProxyListener(ln net.Listener) Option { return func(o *options) { o.proxyLn = ln } }

// WithProxyTLSListeners serves the sandbox proxy over TLS with tlsCfg on
// lns as well: `wrenn dev` offers it both plainly (by headers) and by
// host name over TLS with its own CA.
func WithProxyTLSListeners(tlsCfg *tls.Config, lns ...net.Listener) Option {
	return func(o *options) { o.proxyTLS, o.proxyTLSLn = tlsCfg, lns }
}

// WithMetricsListener serves /metrics on ln instead of listening on the
// configured metrics address.
func WithMetricsListener(ln net.Listener) Option { return func(o *options) { o.metricsLn = ln } }

// WithReady calls ready with the listening address once serving.
func WithReady(ready func(addr string)) Option { return func(o *options) { o.ready = ready } }

// Run starts the control plane and serves until ctx ends; then it stops
// accepting requests, lets in-flight ones finish (up to 15 s), stops the
// background jobs and closes the database.
func Run(ctx context.Context, opts ...Option) error {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if o.cfg == nil {
		cfg, err := config.FromEnv()
		if err != nil {
			return err
		}
		o.cfg = &cfg
	}
	cfg := *o.cfg
	if err := cfg.Validate(); err != nil {
		return err
	}
	apiTLS, proxyTLS, err := tlsConfigs(cfg, o.log)
	if err != nil {
		return err
	}
	keys, err := cpauth.NewKeys(cfg.Secret)
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("database unreachable (WRENN_DATABASE_URL): %w", err)
	}
	if err := Migrate(ctx, pool, o.log); err != nil {
		return err
	}

	svc := service.New(pool, keys, cfg, o.log)
	defer svc.Close()
	if err := svc.LoadHostCA(ctx); err != nil {
		return err
	}
	if apiTLS != nil {
		// Agents present the certificates the host CA issued them;
		// everyone else presents none. Which host a certificate names,
		// and whether it is still on record, the host routes check.
		apiTLS.ClientAuth, apiTLS.ClientCAs = tls.VerifyClientCertIfGiven, svc.CA.Pool()
	}
	if err := svc.FailOrphanBuilds(ctx); err != nil {
		return fmt.Errorf("template builds: %w", err)
	}
	mx := cpmetrics.New(pool, o.log)
	svc.OnOperation = mx.ObserveOperation
	if ok, err := svc.HasAdmin(ctx); err == nil && !ok {
		o.log.Warn("this installation has no platform admin yet: create one on this host with `control-plane create-admin --config FILE --email you@example.com` (the same configuration file or WRENN_DATABASE_URL)")
	}
	api := cpapi.New(svc, cfg, o.log)
	e2bcompat.Mount(api.Root, svc, cfg.SandboxDomain, cfg.MaxBodyBytes, o.log)
	dashboard, err := webui.New(webui.Embedded())
	if err != nil {
		return err
	}
	api.ServeDashboard(dashboard)
	sc := &cpextension.ServerContext{Config: cfg, DB: pool, Queries: svc.Q, Service: svc, Log: o.log, Router: api.Root, API: api.V1}
	sc.Go("reconciler", svc.RunReconciler)
	for _, ext := range o.extensions {
		if err := ext.Register(sc); err != nil {
			return fmt.Errorf("extension %s: %w", ext.Name(), err)
		}
		o.log.Info("extension registered", "extension", ext.Name())
	}

	ln := o.listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
	}
	// The servers' own errors (failed TLS handshakes, mostly) go to the
	// same log as everything else.
	errLog := slog.NewLogLogger(o.log.Handler(), slog.LevelWarn)
	srv := &http.Server{Handler: mx.Requests.Middleware(sc.Wrap(api)), ReadHeaderTimeout: 10 * time.Second, TLSConfig: apiTLS, ErrorLog: errLog}
	servers := []*http.Server{srv}
	listeners := []net.Listener{ln}
	if o.proxyLn == nil && cfg.ProxyListen != "" {
		if o.proxyLn, err = net.Listen("tcp", cfg.ProxyListen); err != nil {
			ln.Close()
			return fmt.Errorf("sandbox proxy: listen on %s: %w", cfg.ProxyListen, err)
		}
	}
	if o.proxyLn != nil || len(o.proxyTLSLn) > 0 {
		proxy := sandboxproxy.New(svc, cfg.SandboxDomain, o.log)
		defer proxy.Close()
		serve := func(ln net.Listener, tlsCfg *tls.Config) {
			servers = append(servers, &http.Server{Handler: clientip.Middleware(cfg.TrustedProxies)(mx.Proxy.Wrap(proxy)),
				ReadHeaderTimeout: cfg.ProxyHeaderTimeout, IdleTimeout: cfg.ProxyIdleTimeout, TLSConfig: tlsCfg, ErrorLog: errLog})
			listeners = append(listeners, sandboxproxy.LimitListener(ln, 2*cfg.ProxyMaxPerClient, cfg.TrustedProxies))
		}
		if o.proxyLn != nil {
			serve(o.proxyLn, proxyTLS)
		}
		for _, ln := range o.proxyTLSLn {
			serve(ln, o.proxyTLS)
			o.log.Info("sandbox proxy listening", "addr", ln.Addr().String(), "domain", cfg.SandboxDomain, "tls", true)
		}
	}

	var ms *metrics.Server
	if o.metricsLn != nil || cfg.MetricsListen != "" {
		ms, err = metrics.Serve(o.metricsLn, cfg.MetricsListen, mx.Registry, func(ctx context.Context) error {
			if err := pool.Ping(ctx); err != nil {
				return errors.New("database unreachable")
			}
			return nil
		}, o.log)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return err
		}
	}

	jobCtx, stopJobs := context.WithCancel(context.WithoutCancel(ctx))
	var jobs sync.WaitGroup
	if ms != nil {
		o.log.Info("metrics listening", "addr", ms.Addr())
		jobs.Go(func() {
			if err := ms.Serve(jobCtx); err != nil {
				o.log.Error("metrics listener stopped", "err", err)
			}
		})
	}
	for _, j := range sc.Jobs() {
		jobs.Go(func() {
			if err := j.Run(jobCtx); err != nil && jobCtx.Err() == nil {
				o.log.Error("background job stopped", "job", j.Name, "err", err)
			}
		})
	}
	defer func() {
		stopJobs()
		jobs.Wait()
	}()

	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() {
			if s.TLSConfig != nil {
				// The certificate comes from TLSConfig.GetCertificate;
				// ServeTLS also sets up HTTP/2.
				errc <- s.ServeTLS(listeners[i], "", "")
				return
			}
			errc <- s.Serve(listeners[i])
		}()
	}
	if o.proxyLn != nil {
		o.log.Info("sandbox proxy listening", "addr", o.proxyLn.Addr().String(), "domain", cfg.SandboxDomain, "tls", proxyTLS != nil)
	}
	o.log.Info("control plane listening", "addr", ln.Addr().String(), "tls", apiTLS != nil)
	if o.ready != nil {
		o.ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	o.log.Info("control plane stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var errs []error
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// tlsConfigs are the API's and the proxy's TLS configurations, nil for
// plain HTTP; the proxy shares the API's pair unless it has its own.
func tlsConfigs(cfg config.Config, log *slog.Logger) (api, proxy *tls.Config, err error) {
	if cfg.PlainHTTP {
		log.Info("serving plain HTTP (plain_http): for development, or behind a proxy that terminates TLS")
		return nil, nil, nil
	}
	apiPair, err := tlsreload.Load(cfg.TLSCertFile, cfg.TLSKeyFile, log)
	if err != nil {
		return nil, nil, fmt.Errorf("API certificate (tls_cert_file, tls_key_file): %w", err)
	}
	proxyPair := apiPair
	if cfg.ProxyTLSCertFile != "" {
		if proxyPair, err = tlsreload.Load(cfg.ProxyTLSCertFile, cfg.ProxyTLSKeyFile, log); err != nil {
			return nil, nil, fmt.Errorf("sandbox proxy certificate (proxy_tls_cert_file, proxy_tls_key_file): %w", err)
		}
	}
	return apiPair.ServerConfig(), proxyPair.ServerConfig(), nil
}

// CheckConfig validates a configuration file as a start would read it
// (with the environment over it) and its certificate and secret files,
// without touching the database or the network, and reports to w.
func CheckConfig(file string, w io.Writer) error {
	cfg, applied, err := config.LoadFrom(settings.Sources{File: file})
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if !cfg.PlainHTTP {
		certFile, keyFile := cfg.ProxyCert()
		pairs := [][2]string{{cfg.TLSCertFile, cfg.TLSKeyFile}}
		if certFile != cfg.TLSCertFile {
			pairs = append(pairs, [2]string{certFile, keyFile})
		}
		for _, p := range pairs {
			desc, err := tlsreload.Check(p[0], p[1])
			if err != nil {
				return err
			}
			fmt.Fprintln(w, "certificate", desc)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(applied)) {
		if applied[name] != file {
			fmt.Fprintf(w, "%s set by %s\n", name, applied[name])
		}
	}
	fmt.Fprintf(w, "%s: ok\n", file)
	return nil
}

// Migrate applies the embedded migrations; replicas starting together
// take turns through a PostgreSQL advisory lock.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	sqlDB := stdlib.OpenDBFromPool(pool)
	defer sqlDB.Close()
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.FS, goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	for _, r := range res {
		log.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "took", r.Duration.Round(time.Millisecond))
	}
	return nil
}

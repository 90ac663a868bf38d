// Package cpextension lets another Go module extend wrenn-cp: add routes
// (public or behind Wrenn's authentication), wrap every request in
// middleware, and run background jobs that start and stop with the server.
//
//	cpserver.Run(ctx, cpserver.WithExtensions(myExtension{}))
package cpextension

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// Extension is registered once, after the database is migrated and before
// the server listens.
type Extension interface {
	// Name identifies the extension in logs and errors.
	Name() string
	// Register adds the extension's routes, middleware and jobs. An error
	// stops the server from starting.
	Register(sc *ServerContext) error
}

// Job is a background task; it runs until its context ends.
type Job struct {
	Name string
	Run  func(ctx context.Context) error
}

// ServerContext is what an extension can use.
type ServerContext struct {
	Config  config.Config
	DB      *pgxpool.Pool
	Queries *db.Queries
	// Service is the control plane's business logic (sandboxes, teams,
	// hosts, audit).
	Service *service.Service
	Log     *slog.Logger
	// Router is the root router. Routes added here are public: add
	// authentication yourself, or use API.
	Router chi.Router
	// API is the /v1 group behind Wrenn's authentication; handlers get
	// the caller with auth.CallerFrom(r.Context()).
	API chi.Router

	jobs       []Job
	middleware []func(http.Handler) http.Handler
}

// Go runs job in the background for the server's lifetime.
func (sc *ServerContext) Go(name string, run func(ctx context.Context) error) {
	sc.jobs = append(sc.jobs, Job{Name: name, Run: run})
}

// Use wraps every request (API, docs, extensions' routes) in mw; the
// first added runs outermost.
func (sc *ServerContext) Use(mw ...func(http.Handler) http.Handler) {
	sc.middleware = append(sc.middleware, mw...)
}

// Jobs lists the jobs added with Go.
func (sc *ServerContext) Jobs() []Job { return sc.jobs }

// Wrap applies the middleware added with Use around h.
func (sc *ServerContext) Wrap(h http.Handler) http.Handler {
	for i := len(sc.middleware) - 1; i >= 0; i-- {
		h = sc.middleware[i](h)
	}
	return h
}

package cpapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"

	"git.omukk.dev/wrenn/sandbox/internal/cpapi"
	"git.omukk.dev/wrenn/sandbox/internal/e2bcompat"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// TestRoutesMatchSpec lists the router's routes and the spec's operations
// and fails on any difference either way.
func TestRoutesMatchSpec(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := service.New(nil, nil, config.Defaults(), log)
	api := cpapi.New(svc, config.Defaults(), log)
	e2bcompat.Mount(api.Root, svc, "", 1<<20, log)
	var routes []string
	err := chi.Walk(api.Root, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes = append(routes, method+" "+strings.TrimSuffix(strings.ReplaceAll(route, "/*/", "/"), "/"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	spec, err := openapi3.NewLoader().LoadFromData(cpapi.Spec)
	if err != nil {
		t.Fatalf("parse openapi.yaml: %v", err)
	}
	if err := spec.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml does not validate: %v", err)
	}
	if !strings.HasPrefix(spec.OpenAPI, "3.1") {
		t.Errorf("spec is OpenAPI %s, want 3.1", spec.OpenAPI)
	}
	ops := specRoutes(t)
	slices.Sort(routes)
	for _, r := range routes {
		if !slices.Contains(ops, r) {
			t.Errorf("route %s is not in openapi.yaml", r)
		}
	}
	for _, o := range ops {
		if !slices.Contains(routes, o) {
			t.Errorf("openapi.yaml describes %s, which the router does not serve", o)
		}
	}
	if len(routes) < 50 {
		t.Errorf("only %d routes walked; the walk is broken", len(routes))
	}
}

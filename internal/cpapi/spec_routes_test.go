package cpapi_test

import (
	"slices"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"git.omukk.dev/wrenn/sandbox/internal/cpapi"
)

// specRoutes lists "METHOD path" for every operation in openapi.yaml.
func specRoutes(t *testing.T) []string {
	t.Helper()
	spec, err := openapi3.NewLoader().LoadFromData(cpapi.Spec)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for path, item := range spec.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	slices.Sort(ops)
	return ops
}

package cpapi_test

import (
	"go/build"
	"strings"
	"testing"
)

// The HTTP APIs reach agents only through the service, in its domain
// types: none of them imports the Connect runtime or the generated
// protos, and the E2B-compatible API shares helpers with this one through
// cphttp rather than importing it.
func TestHTTPLayersStayOffTheWire(t *testing.T) {
	const module = "git.omukk.dev/wrenn/sandbox/"
	for dir, banned := range map[string][]string{
		".":            {"connectrpc.com/", module + "proto/"},
		"../e2bcompat": {"connectrpc.com/", module + "proto/", module + "internal/cpapi"},
		"../cphttp":    {"connectrpc.com/", module + "proto/", module + "internal/cpapi"},
	} {
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range pkg.Imports {
			for _, b := range banned {
				if strings.HasPrefix(imp, b) {
					t.Errorf("%s imports %s", pkg.ImportPath, imp)
				}
			}
		}
	}
}

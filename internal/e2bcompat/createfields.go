package e2bcompat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// createFields are the fields of E2B's NewSandbox and NewSandboxV2 bodies
// (the SDK's createSandbox) that Wrenn honours. Each names its JSON path;
// an object's fields are listed as "parent.child".
var createFields = []string{
	"templateID", "timeout", "metadata", "envVars", "allow_internet_access",
	"autoPause", "autoResume", "autoResume.enabled",
	"network", "network.allowPublicTraffic", "network.allowOut", "network.denyOut",
	// secure asks for envd's access token; every Wrenn sandbox has one,
	// so secure: false gets a sandbox more locked down than asked, which
	// the SDK handles (it always sends the token it is given).
	"secure",
	// autoPauseMemory: true is what autoPause does; false is refused in
	// refusedCreateValues.
	"autoPauseMemory",
}

// unsupportedCreateFields are E2B create fields that Wrenn does not
// honour yet: a request that sets one is refused (400) naming it rather
// than getting a sandbox without what it asked for. A field leaves this
// list in the change that honours it.
var unsupportedCreateFields = []string{
	"network.egressProxy", "network.rules",
	"network.maskRequestHost", "network.httpsPorts",
	"volumeMounts", "mcp", "iam",
}

// refusedCreateValues are values of honoured fields that Wrenn cannot
// honour: path → the value refused and why.
var refusedCreateValues = map[string]struct{ value, why string }{
	"autoPauseMemory": {"false", "a filesystem-only pause is not supported: auto-pause keeps memory"},
}

// checkCreateFields refuses a create body that sets a field Wrenn does
// not honour, or one no E2B SDK sends. A field set to null, or to an
// empty list or object, asks for nothing and passes.
func checkCreateFields(body []byte) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return fmt.Errorf("malformed JSON body: %w", err)
	}
	return checkFields("", top)
}

func checkFields(prefix string, obj map[string]json.RawMessage) error {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := bytes.TrimSpace(obj[k])
		path := prefix + k
		if asksNothing(v) {
			continue
		}
		if slices.Contains(unsupportedCreateFields, path) {
			return fmt.Errorf("%s is not supported by this server (Wrenn); remove it from the request", path)
		}
		if !slices.Contains(createFields, path) {
			return fmt.Errorf("unknown field %s", path)
		}
		if r, ok := refusedCreateValues[path]; ok && string(v) == r.value {
			return fmt.Errorf("%s: %s is not supported: %s", path, r.value, r.why)
		}
		if v[0] == '{' && hasChildren(path) {
			var child map[string]json.RawMessage
			if err := json.Unmarshal(v, &child); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if err := checkFields(path+".", child); err != nil {
				return err
			}
		}
	}
	return nil
}

// hasChildren reports whether path is an object whose fields are listed
// (metadata and envVars hold the user's own keys).
func hasChildren(path string) bool {
	for _, f := range slices.Concat(createFields, unsupportedCreateFields) {
		if strings.HasPrefix(f, path+".") {
			return true
		}
	}
	return false
}

func asksNothing(v []byte) bool {
	switch string(v) {
	case "", "null":
		return true
	}
	if v[0] == '[' || v[0] == '{' {
		var x any
		if json.Unmarshal(v, &x) == nil {
			switch t := x.(type) {
			case []any:
				return len(t) == 0
			case map[string]any:
				return len(t) == 0
			}
		}
	}
	return false
}

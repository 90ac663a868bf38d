package e2bcompat

import (
	"strings"
	"testing"
)

func TestCheckCreateFields(t *testing.T) {
	for _, c := range []struct {
		body, refused string // refused: what the error must name; "" passes
	}{
		{`{"templateID":"base","timeout":300,"metadata":{"a":"b"},"envVars":{"X":"1"},"autoPause":true,"autoPauseMemory":true,"autoResume":{"enabled":true},"secure":true,"allow_internet_access":false,"network":{"allowPublicTraffic":false}}`, ""},
		{`{"templateID":"base","mcp":null,"volumeMounts":[],"iam":{},"network":{"allowOut":[ ],"rules":{}}}`, ""},
		{`{"metadata":{"network.allowOut":"x","mcp":"y"}}`, ""},                // the user's own keys
		{`{"network":{"denyOut":["8.8.8.8"],"allowOut":["example.com"]}}`, ""}, // the egress policy
		{`{"network":{"egressProxy":{"address":"p:1080"}}}`, "network.egressProxy"},
		{`{"network":{"rules":{"api.example.com":[{}]}}}`, "network.rules"},
		{`{"network":{"maskRequestHost":"x"}}`, "network.maskRequestHost"},
		{`{"network":{"httpsPorts":[8443]}}`, "network.httpsPorts"},
		{`{"network":{"somethingNew":1}}`, "network.somethingNew"},
		{`{"volumeMounts":[{"name":"v","path":"/data"}]}`, "volumeMounts"},
		{`{"mcp":{"github":{}}}`, "mcp"},
		{`{"iam":{"tokens":{"t":{"audience":"a","tokenType":"b"}}}}`, "iam"},
		{`{"autoPause":true,"autoPauseMemory":false}`, "autoPauseMemory"},
		{`{"autoResume":{"enabled":true,"after":1}}`, "autoResume.after"},
		{`{"templateId":"base"}`, "templateId"},
	} {
		err := checkCreateFields([]byte(c.body))
		switch {
		case c.refused == "" && err != nil:
			t.Errorf("%s refused: %v", c.body, err)
		case c.refused != "" && (err == nil || !strings.Contains(err.Error(), c.refused)):
			t.Errorf("%s: want an error naming %s, got %v", c.body, c.refused, err)
		}
	}
}

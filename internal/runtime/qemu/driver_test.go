package qemu

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLegacyStateTellsTheFormats(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		head    string
		legacy  bool
		wantErr bool
	}{
		"device state":                 {head: "QEVM\x00\x00\x00\x03\x04\x00\x00\x00\x00", legacy: false},
		"migration with configuration": {head: "QEVM\x00\x00\x00\x03\x07\x00\x00\x00\x0bpc", legacy: true},
		"not QEMU's":                   {head: "not a state file", wantErr: true},
		"truncated":                    {head: "QEVM\x00", wantErr: true},
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(tc.head), 0o600); err != nil {
			t.Fatal(err)
		}
		legacy, err := legacyState(path)
		if (err != nil) != tc.wantErr || legacy != tc.legacy {
			t.Errorf("%s: legacy %v, err %v", name, legacy, err)
		}
	}
	if _, err := legacyState(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing state file was read")
	}
}

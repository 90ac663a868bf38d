package guestinit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// hostsPath is a variable for tests.
var hostsPath = "/etc/hosts"

// ensureHosts makes /etc/hosts name localhost and the sandbox's hostname,
// as a Debian system's does: programs that look their own host up (sudo
// warns "unable to resolve host" and waits on DNS otherwise, and many
// servers bind to it) find it without the network. Neither runtime writes
// the file (runsc leaves whatever the image has, and a debootstrap image
// has none). Lines already there are kept; a missing hostname is added.
func ensureHosts(hostname string) error {
	old, err := os.ReadFile(hostsPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", hostsPath, err)
	}
	text, changed := string(old), false
	if len(old) == 0 {
		text, changed = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", true
	}
	if hostname != "" && !hostsNames(text)[hostname] {
		if !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		text, changed = text+"127.0.1.1\t"+hostname+"\n", true
	}
	if !changed {
		return nil
	}
	if err := os.WriteFile(hostsPath, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", hostsPath, err)
	}
	return nil
}

// hostsNames is every name /etc/hosts text gives an address.
func hostsNames(text string) map[string]bool {
	names := map[string]bool{}
	for line := range strings.Lines(text) {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		for _, n := range f[min(1, len(f)):] {
			names[n] = true
		}
	}
	return names
}

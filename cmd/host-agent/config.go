package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/pkg/settings"
)

// configEnv names the configuration file when --config does not.
const configEnv = "WRENN_AGENT_CONFIG"

// The agent's configuration file holds its flags: a key is a flag's name
// with underscores ("state_dir" for --state-dir). Flags given on the
// command line win, then the environment variables a flag already reads,
// then the file, then the flag's default.
var configFile = flag.String("config", os.Getenv(configEnv), "TOML configuration file whose keys are these flags' names with underscores (or "+configEnv+"); flags and environment variables take precedence")

// flagEnv are the environment variables that set a flag, or set what the
// flag would (the secret itself instead of the file holding it): when one
// is set, the file's value for that flag is not used.
var flagEnv = map[string]struct {
	env     string
	shadows []string
}{
	"control-plane":           {env: "WRENN_CONTROL_PLANE"},
	"secret-file":             {shadows: []string{"WRENN_AGENT_SECRET"}},
	"registration-token-file": {shadows: []string{"WRENN_REGISTRATION_TOKEN"}},
}

// configKeys is one key per flag but --config.
func configKeys(fs *flag.FlagSet) []settings.Key {
	var keys []settings.Key
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		k := settings.Key{Name: strings.ReplaceAll(f.Name, "-", "_"), Flag: f.Name, Help: f.Usage, Set: f.Value.Set}
		switch f.Value.(flag.Getter).Get().(type) {
		case bool:
			k.Kind = settings.KindBool
		case int, int64, uint, uint64:
			k.Kind = settings.KindInt
		case time.Duration:
			k.Kind = settings.KindDuration
		}
		if e, ok := flagEnv[f.Name]; ok {
			k.Env, k.Shadows = e.env, e.shadows
		}
		keys = append(keys, k)
	})
	return keys
}

// loadConfig applies the configuration file, if any, to the flags the
// command line did not set. Call it after fs.Parse.
func loadConfig(fs *flag.FlagSet) (settings.Applied, error) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	return settings.Load(configKeys(fs), settings.Sources{File: *configFile, FlagsSet: given})
}

// checkConfig is `host-agent check-config [FILE]`: it reads the file as a
// start would (flags and environment over it) and checks the values a
// start would refuse, without starting anything.
func checkConfig(fs *flag.FlagSet, args []string, w io.Writer) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch fs.NArg() {
	case 0:
	case 1:
		*configFile = fs.Arg(0)
	default:
		return errors.New("usage: host-agent check-config [flags] [FILE]")
	}
	if *configFile == "" {
		return errors.New("name a file (or set " + configEnv + ")")
	}
	applied, err := loadConfig(fs)
	if err != nil {
		return err
	}
	get := func(name string) string { return fs.Lookup(name).Value.String() }
	oneOf := func(name string, allowed ...string) error {
		if v := get(name); !slices.Contains(allowed, v) {
			return fmt.Errorf("%s = %q: use %s", strings.ReplaceAll(name, "-", "_"), v, strings.Join(allowed, ", "))
		}
		return nil
	}
	var problems []error
	problems = append(problems,
		oneOf("runtime", "auto", "qemu", "gvisor", "firecracker"),
		oneOf("accel", "auto", "kvm", "tcg"),
		oneOf("on-stop", "pause", "destroy"))
	if p := fs.Lookup("network-partition").Value.(flag.Getter).Get().(int); p < 0 || p >= network.Partitions {
		problems = append(problems, fmt.Errorf("network_partition = %d: use 0 to %d", p, network.Partitions-1))
	}
	for _, name := range []string{"listen", "advertise"} {
		if v := get(name); v != "" {
			if _, _, err := net.SplitHostPort(v); err != nil {
				problems = append(problems, fmt.Errorf("%s = %q: %w", name, v, err))
			}
		}
	}
	if get("control-plane") == "" && get("secret-file") == "" && os.Getenv("WRENN_AGENT_SECRET") == "" {
		problems = append(problems, errors.New("neither control_plane nor secret_file is set: the agent registers with a control plane, or (alone) needs a secret callers present"))
	}
	for _, name := range []string{"secret-file", "registration-token-file", "control-plane-ca-file"} {
		if v := get(name); v != "" {
			if _, err := os.ReadFile(v); err != nil {
				problems = append(problems, fmt.Errorf("%s: %w", strings.ReplaceAll(name, "-", "_"), err))
			}
		}
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("%s: %w", *configFile, err)
	}
	for _, name := range slices.Sorted(maps.Keys(applied)) {
		if applied[name] != *configFile {
			fmt.Fprintf(w, "%s set by %s\n", name, applied[name])
		}
	}
	fmt.Fprintf(w, "%s: ok\n", *configFile)
	return nil
}

// notifyReady tells systemd (Type=notify) the agent serves once Run sends
// its address, and that it is stopping (pausing its sandboxes) once done
// is closed; without NOTIFY_SOCKET it does nothing but drain ready.
func notifyReady(ready <-chan string, done <-chan struct{}) {
	notify := func(state string) {
		if _, err := daemon.SdNotify(false, state); err != nil {
			fmt.Fprintf(os.Stderr, "host-agent: tell systemd %s: %v\n", state, err)
		}
	}
	select {
	case addr := <-ready:
		notify(daemon.SdNotifyReady + "\nSTATUS=serving on " + addr)
	case <-done:
		return
	}
	<-done
	notify(daemon.SdNotifyStopping + "\nSTATUS=stopping: pausing sandboxes")
}

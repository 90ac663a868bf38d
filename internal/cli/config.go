package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/BurntSushi/toml"
)

// config is $XDG_CONFIG_HOME/wrenn/config.toml: named profiles, one of
// them current. It holds credentials, so it is written with mode 0600.
type config struct {
	Current  string              `toml:"current,omitempty"`
	Profiles map[string]*profile `toml:"profiles,omitempty"`
}

// profile is one endpoint and credential.
type profile struct {
	APIURL        string `toml:"api_url"`
	SandboxURL    string `toml:"sandbox_url,omitempty"`
	SandboxDomain string `toml:"sandbox_domain,omitempty"`
	Protocol      string `toml:"protocol,omitempty"`
	Email         string `toml:"email,omitempty"`
	// APIKey or SessionToken is the credential.
	APIKey       string `toml:"api_key,omitempty"`
	SessionToken string `toml:"session_token,omitempty"`
}

func (p *profile) credential() string {
	if p.SessionToken != "" {
		return p.SessionToken
	}
	return p.APIKey
}

const defaultProfile = "default"

func configPath() string {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "."
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "wrenn", "config.toml")
}

func loadConfig() (*config, error) {
	c := &config{Profiles: map[string]*profile{}}
	path := configPath()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if err := toml.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.Profiles == nil {
		c.Profiles = map[string]*profile{}
	}
	return c, nil
}

// profile returns the named profile (or $WRENN_PROFILE's, or the current
// one) and its name; nil when there is none.
func (c *config) profile(name string) (*profile, string, error) {
	if name == "" {
		name = os.Getenv("WRENN_PROFILE")
	}
	if name == "" {
		name = c.Current
	}
	if name == "" {
		name = defaultProfile
	}
	return c.Profiles[name], name, nil
}

func (c *config) names() []string {
	out := make([]string, 0, len(c.Profiles))
	for n := range c.Profiles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// save writes the file atomically with mode 0600 (its directory 0700).
func (c *config) save() error {
	path := configPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".config-*.toml")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString("# wrenn profiles (written by 'wrenn login'; holds credentials)\n"); err != nil {
		f.Close()
		return err
	}
	if err := toml.NewEncoder(f).Encode(c); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

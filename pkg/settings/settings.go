// Package settings reads a process's configuration through one table of
// keys: each key has a name in the TOML configuration file, optionally an
// environment variable and a command-line flag, and one parser. Values
// apply in increasing precedence: defaults, the file, the environment,
// flags. Every error names where the value came from, the key and the
// reason, and a key the table does not know is an error, never ignored.
package settings

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Kind is the TOML type a key takes in the file.
type Kind int

const (
	// KindString takes a TOML string.
	KindString Kind = iota
	// KindBool takes true or false.
	KindBool
	// KindInt takes a TOML integer.
	KindInt
	// KindDuration takes a TOML string in Go's duration syntax ("90s", "24h").
	KindDuration
)

func (k Kind) String() string {
	return [...]string{"a string", "true or false", "an integer", `a duration such as "30s" or "24h"`}[k]
}

// Key is one setting.
type Key struct {
	// Name is the key in the file ("" for a setting only the environment
	// sets, such as a secret).
	Name string
	// Env is the environment variable that overrides the file ("" for none).
	Env string
	// Shadows are further environment variables that, when set, make the
	// file's value unused: they set the same thing another way (a secret
	// given directly instead of the file holding it).
	Shadows []string
	// Flag is the command-line flag that overrides both ("" for none).
	Flag string
	Kind Kind
	// Empty means an empty environment variable is a value (turning
	// something off); otherwise an empty variable counts as unset.
	Empty bool
	Help  string
	// Set parses and stores a value, in the string form a flag or an
	// environment variable has (the file's booleans and integers are
	// formatted so first).
	Set func(string) error
}

// String is a key that stores a string in p.
func String(name, env string, p *string, help string) Key {
	return Key{Name: name, Env: env, Kind: KindString, Help: help, Set: func(v string) error { *p = v; return nil }}
}

// Bool is a key that stores a boolean in p.
func Bool(name, env string, p *bool, help string) Key {
	return Key{Name: name, Env: env, Kind: KindBool, Help: help, Set: func(v string) (err error) {
		*p, err = strconv.ParseBool(v)
		return err
	}}
}

// Int is a key that stores an integer in p.
func Int(name, env string, p *int, help string) Key {
	return Key{Name: name, Env: env, Kind: KindInt, Help: help, Set: func(v string) (err error) {
		*p, err = strconv.Atoi(v)
		return err
	}}
}

// Int64 is a key that stores an integer in p.
func Int64(name, env string, p *int64, help string) Key {
	return Key{Name: name, Env: env, Kind: KindInt, Help: help, Set: func(v string) (err error) {
		*p, err = strconv.ParseInt(v, 10, 64)
		return err
	}}
}

// Duration is a key that stores a duration in p.
func Duration(name, env string, p *time.Duration, help string) Key {
	return Key{Name: name, Env: env, Kind: KindDuration, Help: help, Set: func(v string) (err error) {
		*p, err = time.ParseDuration(v)
		return err
	}}
}

// Error is a value that could not be used.
type Error struct {
	// Source is the file's path, or the environment variable or flag
	// that carried the value.
	Source string
	// Key is the key in the file ("" when Source names it already).
	Key string
	Err error
}

func (e *Error) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s: %v", e.Source, e.Err)
	}
	return fmt.Sprintf("%s: key %q: %v", e.Source, e.Key, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Sources say where values come from besides the defaults already in the
// fields.
type Sources struct {
	// File is a TOML file ("" for none).
	File string
	// LookupEnv reads the environment (os.LookupEnv when nil).
	LookupEnv func(string) (string, bool)
	// FlagsSet are the flags given on the command line: their keys keep
	// the value the flag parser stored.
	FlagsSet map[string]bool
}

// Applied says where each key's value came from.
type Applied map[string]string

// Load applies the file, then the environment, over the values already
// in the fields, leaving alone the keys whose flag was given. It returns
// the source of every key it set.
func Load(keys []Key, src Sources) (Applied, error) {
	if err := checkTable(keys); err != nil {
		return nil, err
	}
	env := src.LookupEnv
	if env == nil {
		env = os.LookupEnv
	}
	envSet := func(name string) (string, bool) {
		if name == "" {
			return "", false
		}
		return env(name)
	}
	applied := Applied{}
	if src.File != "" {
		values, err := ReadFile(src.File)
		if err != nil {
			return nil, err
		}
		byName := map[string]Key{}
		for _, k := range keys {
			if k.Name != "" {
				byName[k.Name] = k
			}
		}
		names := make([]string, 0, len(values))
		for name := range values {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			k, ok := byName[name]
			if !ok {
				return nil, &Error{Source: src.File, Key: name, Err: fmt.Errorf("unknown key (known: %s)", strings.Join(Names(keys), ", "))}
			}
			s, err := fileValue(k.Kind, values[name])
			if err != nil {
				return nil, &Error{Source: src.File, Key: name, Err: err}
			}
			if src.FlagsSet[k.Flag] || overridden(k, envSet) {
				continue
			}
			if err := k.Set(s); err != nil {
				return nil, &Error{Source: src.File, Key: name, Err: err}
			}
			applied[keyID(k)] = src.File
		}
	}
	for _, k := range keys {
		if src.FlagsSet[k.Flag] {
			applied[keyID(k)] = "--" + k.Flag
			continue
		}
		v, ok := envSet(k.Env)
		if !ok || (v == "" && !k.Empty) {
			continue
		}
		if err := k.Set(v); err != nil {
			return nil, &Error{Source: k.Env, Err: err}
		}
		applied[keyID(k)] = k.Env
	}
	return applied, nil
}

// overridden says whether the environment sets the key, directly or
// through a variable that shadows it.
func overridden(k Key, env func(string) (string, bool)) bool {
	for _, name := range append([]string{k.Env}, k.Shadows...) {
		if v, ok := env(name); ok && (v != "" || k.Empty && name == k.Env) {
			return true
		}
	}
	return false
}

func keyID(k Key) string {
	if k.Name != "" {
		return k.Name
	}
	return k.Env
}

// Names lists the keys a file may hold, sorted.
func Names(keys []Key) []string {
	var out []string
	for _, k := range keys {
		if k.Name != "" {
			out = append(out, k.Name)
		}
	}
	slices.Sort(out)
	return out
}

// checkTable catches a table that names one key, variable or flag twice:
// a programming error, reported before anything is read.
func checkTable(keys []Key) error {
	seen := map[string]bool{}
	for _, k := range keys {
		if k.Set == nil {
			return fmt.Errorf("settings: key %q has no setter", keyID(k))
		}
		for _, id := range []string{"name " + k.Name, "env " + k.Env, "flag " + k.Flag} {
			if strings.HasSuffix(id, " ") {
				continue
			}
			if seen[id] {
				return fmt.Errorf("settings: %s appears twice in the table", id)
			}
			seen[id] = true
		}
	}
	return nil
}

// ReadFile parses a TOML file into its keys, tables flattened with dots
// ("[tls] cert_file" is "tls.cert_file").
func ReadFile(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Source: path, Err: err}
	}
	var raw map[string]any
	if _, err := toml.Decode(string(b), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{Source: path, Err: fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)}
		}
		return nil, &Error{Source: path, Err: err}
	}
	out := map[string]any{}
	var flatten func(prefix string, m map[string]any)
	flatten = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				flatten(prefix+k+".", sub)
				continue
			}
			out[prefix+k] = v
		}
	}
	flatten("", raw)
	return out, nil
}

// fileValue checks a TOML value against the key's kind and formats it as
// a flag or environment variable would carry it.
func fileValue(kind Kind, v any) (string, error) {
	switch kind {
	case KindString, KindDuration:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case KindBool:
		if b, ok := v.(bool); ok {
			return strconv.FormatBool(b), nil
		}
	case KindInt:
		if i, ok := v.(int64); ok {
			return strconv.FormatInt(i, 10), nil
		}
	}
	return "", fmt.Errorf("want %s, got %s", kind, describe(v))
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case int64:
		return fmt.Sprintf("the integer %d", v)
	case float64:
		return fmt.Sprintf("the number %v", v)
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	case []any, []map[string]any:
		return "an array"
	default:
		return fmt.Sprintf("%T", v)
	}
}

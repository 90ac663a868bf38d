package codeinterp

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// KernelSpecDirs are where Jupyter kernel specs are installed system-wide
// (Debian's python3-ipykernel and r-cran-irkernel put theirs in
// /usr/share/jupyter/kernels).
var KernelSpecDirs = []string{"/usr/local/share/jupyter/kernels", "/usr/share/jupyter/kernels"}

// KernelSpec is a kernel.json: how to start a kernel for one language.
type KernelSpec struct {
	Name          string            `json:"-"` // its directory's name
	Argv          []string          `json:"argv"`
	DisplayName   string            `json:"display_name"`
	Language      string            `json:"language"`
	InterruptMode string            `json:"interrupt_mode"` // "signal" (default) or "message"
	Env           map[string]string `json:"env"`
}

// ipython reports whether the spec starts IPython's kernel, which takes
// IPython's own command-line options.
func (k *KernelSpec) ipython() bool {
	return slices.ContainsFunc(k.Argv, func(a string) bool { return a == "ipykernel_launcher" || a == "ipykernel" })
}

// Languages maps a language name, as the SDKs spell it, to its kernel spec.
type Languages map[string]*KernelSpec

// FindLanguages reads the kernel specs in dirs; an earlier directory wins
// for a language, and within one the spec named like the language (or
// python3 for Python) wins.
func FindLanguages(dirs []string) (Languages, error) {
	langs := Languages{}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("kernel specs in %s: %w", dir, err)
		}
		found := map[string]*KernelSpec{}
		for _, e := range entries {
			raw, err := os.ReadFile(filepath.Join(dir, e.Name(), "kernel.json"))
			if err != nil {
				continue
			}
			spec := &KernelSpec{Name: e.Name()}
			if err := json.Unmarshal(raw, spec); err != nil {
				return nil, fmt.Errorf("kernel spec %s: %w", filepath.Join(dir, e.Name()), err)
			}
			if len(spec.Argv) == 0 || spec.Language == "" {
				return nil, fmt.Errorf("kernel spec %s: argv and language are required", filepath.Join(dir, e.Name()))
			}
			lang := NormalizeLanguage(spec.Language)
			if prev, ok := found[lang]; ok && (prev.Name == lang || prev.Name == "python3") {
				continue
			}
			found[lang] = spec
		}
		for lang, spec := range found {
			if _, ok := langs[lang]; !ok {
				langs[lang] = spec
			}
		}
	}
	return langs, nil
}

// NormalizeLanguage maps what SDK callers write to one name per language.
func NormalizeLanguage(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	switch s {
	case "", "python3", "py":
		return "python"
	case "js", "node", "nodejs":
		return "javascript"
	case "ts":
		return "typescript"
	}
	return s
}

// Names lists the languages, sorted.
func (l Languages) Names() []string {
	out := make([]string, 0, len(l))
	for name := range l {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Lookup finds the spec for a language as a caller names it.
func (l Languages) Lookup(language string) (string, *KernelSpec, error) {
	name := NormalizeLanguage(language)
	spec, ok := l[name]
	if !ok {
		return name, nil, fmt.Errorf("language %q has no kernel in this sandbox; available: %s", language, strings.Join(l.Names(), ", "))
	}
	return name, spec, nil
}

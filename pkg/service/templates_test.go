package service

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLayerKeysChain: a key changes with anything before or in its step,
// and only then.
func TestLayerKeysChain(t *testing.T) {
	steps := []BuildStep{
		{Type: StepRun, Args: []string{"apt-get install -y jq", "root"}},
		{Type: StepCopy, Args: []string{"app/", "/home/user/app", "", ""}, FilesHash: strings.Repeat("a", 64)},
		{Type: StepRun, Args: []string{"make"}},
	}
	keys := func(base string, st []BuildStep) []string {
		var out []string
		prev := base
		for _, s := range st {
			prev = layerKey(prev, s)
			out = append(out, prev)
		}
		return out
	}
	a := keys("image:base", steps)
	if b := keys("image:base", steps); strings.Join(a, ",") != strings.Join(b, ",") {
		t.Fatal("keys are not deterministic")
	}
	last := append([]BuildStep{}, steps...)
	last[2] = BuildStep{Type: StepRun, Args: []string{"make install"}}
	if c := keys("image:base", last); c[0] != a[0] || c[1] != a[1] || c[2] == a[2] {
		t.Fatal("changing the last step must change only its key")
	}
	files := append([]BuildStep{}, steps...)
	files[1].FilesHash = strings.Repeat("b", 64)
	if c := keys("image:base", files); c[0] != a[0] || c[1] == a[1] || c[2] == a[2] {
		t.Fatal("changed files must change their step's key and every later one")
	}
	if c := keys("image:minimal", steps); c[0] == a[0] {
		t.Fatal("another base must change every key")
	}
	// Argument boundaries count: ["ab", ""] is not ["a", "b"].
	if layerKey("x", BuildStep{Type: StepRun, Args: []string{"ab", ""}}) == layerKey("x", BuildStep{Type: StepRun, Args: []string{"a", "b"}}) {
		t.Fatal("arguments run together")
	}
}

func TestBuildStateResolves(t *testing.T) {
	st := buildState{envs: map[string]string{}, home: "/home/user"}
	if st.resolve("app") != "/home/user/app" || st.resolve("~") != "/home/user" || st.resolve("~/x") != "/home/user/x" || st.resolve("~x") != "/home/user/~x" {
		t.Fatal("resolve before a workdir")
	}
	st.apply(BuildStep{Type: StepEnv, Args: []string{"A", "1", "B", "2"}})
	st.apply(BuildStep{Type: StepWorkdir, Args: []string{"/srv"}})
	st.apply(BuildStep{Type: StepWorkdir, Args: []string{"app"}})
	st.apply(BuildStep{Type: StepUser, Args: []string{"root"}})
	if st.envs["A"] != "1" || st.envs["B"] != "2" || st.workdir != "/srv/app" || st.user != "root" {
		t.Fatalf("state %+v", st)
	}
	if st.resolve("x/y") != "/srv/app/x/y" || st.resolve("/abs") != "/abs" {
		t.Fatal("resolve")
	}
}

// TestCopyScriptQuoting runs the COPY step's glob quoting through a real
// shell: names with spaces and quotes stay one word; globs still match.
func TestCopyScriptQuoting(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a b.txt", "it's.txt", "x1.log", "x2.log"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for pattern, want := range map[string]string{"a b.txt": "a b.txt", "it's.txt": "it's.txt", "x*.log": "x1.log|x2.log", "$(touch pwned)": "$(touch pwned)"} {
		out, err := exec.Command("sh", "-c", "cd "+shellQuote(dir)+"; for f in "+globQuote(pattern)+`; do printf '%s|' "$f"; done`).Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSuffix(string(out), "|"); got != want {
			t.Errorf("%q: got %q, want %q", pattern, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Fatal("a file name ran as a command")
	}
}

func TestSpecValidation(t *testing.T) {
	ok := BuildSpec{FromTemplate: "base", Steps: []BuildStep{{Type: StepRun, Args: []string{"true"}}}}
	if err := ok.validate(); err != nil {
		t.Fatal(err)
	}
	for name, sp := range map[string]BuildSpec{
		"copy escapes via clean": {FromTemplate: "base", Steps: []BuildStep{{Type: StepCopy, Args: []string{"app/../../x", "/d"}, FilesHash: strings.Repeat("a", 64)}}},
		"copy home":              {FromTemplate: "base", Steps: []BuildStep{{Type: StepCopy, Args: []string{"~/x", "/d"}, FilesHash: strings.Repeat("a", 64)}}},
		"copy bad mode":          {FromTemplate: "base", Steps: []BuildStep{{Type: StepCopy, Args: []string{"x", "/d", "", "999"}, FilesHash: strings.Repeat("a", 64)}}},
		"copy bad hash":          {FromTemplate: "base", Steps: []BuildStep{{Type: StepCopy, Args: []string{"x", "/d"}, FilesHash: "abc"}}},
		"run empty":              {FromTemplate: "base", Steps: []BuildStep{{Type: StepRun, Args: []string{" "}}}},
		"user bad":               {FromTemplate: "base", Steps: []BuildStep{{Type: StepUser, Args: []string{"root; rm"}}}},
		"env bad name":           {FromTemplate: "base", Steps: []BuildStep{{Type: StepEnv, Args: []string{"A B", "1"}}}},
		"too many":               {FromTemplate: "base", Steps: make([]BuildStep, MaxBuildSteps+1)},
	} {
		if err := sp.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

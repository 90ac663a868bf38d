package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"git.omukk.dev/wrenn/sandbox/pkg/sdk"
)

// The examples run against the Wrenn that WRENN_API_URL, WRENN_API_KEY and
// WRENN_SANDBOX_URL name (`wrenn dev` prints them); without those they are
// only compiled (see TestMain).

func Example() {
	ctx := context.Background()
	c, err := sdk.New() // WRENN_API_URL, WRENN_API_KEY, WRENN_SANDBOX_URL
	if err != nil {
		log.Fatal(err)
	}
	sb, err := c.Create(ctx, sdk.CreateOptions{Template: "minimal", Timeout: 5 * time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Kill(ctx)

	res, err := sb.Commands.Run(ctx, "echo hello from $(uname -s)")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(res.Stdout)
	// Output: hello from Linux
}

func ExampleCommands_Run_exitCode() {
	ctx := context.Background()
	c, _ := sdk.New()
	sb, err := c.Create(ctx, sdk.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Kill(ctx)

	_, err = sb.Commands.Run(ctx, "echo oops >&2; exit 3")
	var exit *sdk.ExitError
	if errors.As(err, &exit) {
		fmt.Printf("exit %d, stderr %q\n", exit.ExitCode(), exit.Result.Stderr)
	}
	// Output: exit 3, stderr "oops\n"
}

func ExampleCommands_Start() {
	ctx := context.Background()
	c, _ := sdk.New()
	sb, err := c.Create(ctx, sdk.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Kill(ctx)

	// A background process reading its standard input.
	h, err := sb.Commands.Start(ctx, "tr a-z A-Z", sdk.WithStdin())
	if err != nil {
		log.Fatal(err)
	}
	_ = h.SendStdin(ctx, []byte("shout\n"))
	_ = h.CloseStdin(ctx)
	res, err := h.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(res.Stdout)
	// Output: SHOUT
}

func ExampleWithStdout() {
	ctx := context.Background()
	c, _ := sdk.New()
	sb, err := c.Create(ctx, sdk.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Kill(ctx)

	// Output streams to a writer as the command runs.
	_, err = sb.Commands.Run(ctx, "for i in 1 2 3; do echo line $i; done", sdk.WithStdout(os.Stdout))
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// line 1
	// line 2
	// line 3
}

func ExampleFiles_Write() {
	ctx := context.Background()
	c, _ := sdk.New()
	sb, err := c.Create(ctx, sdk.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Kill(ctx)

	// Any io.Reader streams into the sandbox; the file appears whole.
	if _, err := sb.Files.Write(ctx, "/tmp/greeting.txt", strings.NewReader("hello, file\n")); err != nil {
		log.Fatal(err)
	}
	rc, err := sb.Files.Read(ctx, "/tmp/greeting.txt")
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	io.Copy(os.Stdout, rc)

	_, err = sb.Files.ReadFile(ctx, "/tmp/missing")
	fmt.Println(errors.Is(err, sdk.ErrNotFound))
	// Output:
	// hello, file
	// true
}

func ExampleFiles_Watch() {
	ctx := context.Background()
	c, _ := sdk.New()
	sb, err := c.Create(ctx, sdk.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Kill(ctx)

	if _, err := sb.Files.MakeDir(ctx, "/tmp/watched"); err != nil {
		log.Fatal(err)
	}
	w, err := sb.Files.Watch(ctx, "/tmp/watched", false)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	if _, err := sb.Commands.Run(ctx, "echo hi > /tmp/watched/new.txt"); err != nil {
		log.Fatal(err)
	}
	ev := <-w.Events()
	fmt.Println(ev.Type, ev.Name)
	// Output: create new.txt
}

func ExamplePTYs_Create() {
	ctx := context.Background()
	c, _ := sdk.New()
	sb, err := c.Create(ctx, sdk.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Kill(ctx)

	term, err := sb.PTY.Create(ctx, sdk.PTYOptions{Cols: 80, Rows: 24})
	if err != nil {
		log.Fatal(err)
	}
	_ = term.SendInput(ctx, []byte("stty size; exit\n"))
	out, _ := io.ReadAll(term) // the terminal's output, until the shell exits
	fmt.Println(strings.Contains(string(out), "24 80"))
	// Output: true
}

func ExampleClient_List() {
	ctx := context.Background()
	c, _ := sdk.New()
	sb, err := c.Create(ctx, sdk.CreateOptions{Metadata: map[string]string{"example": "list"}})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Kill(ctx)

	// Pages are fetched as the loop goes.
	for info, err := range c.List(ctx, sdk.ListOptions{Metadata: map[string]string{"example": "list"}}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(info.ID == sb.ID, info.State)
	}
	// Output: true running
}

func ExampleSandbox_Pause() {
	ctx := context.Background()
	c, _ := sdk.New()
	sb, err := c.Create(ctx, sdk.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Kill(ctx)
	_, _ = sb.Files.WriteFile(ctx, "/tmp/kept.txt", []byte("still here"))

	if err := sb.Pause(ctx); err != nil {
		log.Fatal(err)
	}
	// Connect resumes a paused sandbox, memory and files included.
	back, err := c.Connect(ctx, sb.ID, sdk.ConnectOptions{})
	if err != nil {
		log.Fatal(err)
	}
	b, _ := back.Files.ReadFile(ctx, "/tmp/kept.txt")
	fmt.Println(string(b))
	// Output: still here
}

func ExampleNew_e2b() {
	// The same client speaks E2B's API: against Wrenn's /e2b here, or any
	// E2B-compatible endpoint (E2B_API_URL, E2B_API_KEY, E2B_SANDBOX_URL or
	// E2B_DOMAIN select it from the environment).
	c, err := sdk.New(sdk.WithProtocol(sdk.ProtocolE2B), sdk.WithAPIURL(os.Getenv("WRENN_API_URL")+"/e2b"))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	sb, err := c.Create(ctx, sdk.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Kill(ctx)
	res, _ := sb.Commands.Run(ctx, "echo via e2b")
	fmt.Print(res.Stdout)
	// Output: via e2b
}

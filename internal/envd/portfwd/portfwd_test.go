package portfwd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
)

func TestParseHexAddr(t *testing.T) {
	cases := map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000:0016":                         "0.0.0.0:22",
		"00000000000000000000000001000000:0050": "[::1]:80",
		"0000000000000000FFFF00000100007F:0050": "127.0.0.1:80",
	}
	for in, want := range cases {
		got, err := parseHexAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("%s: %v %v, want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "zz:1", "0100007F", "0100:10"} {
		if _, err := parseHexAddr(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParseTableListenOnly(t *testing.T) {
	dir := t.TempDir()
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F91 0100007F:9999 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0
`
	os.WriteFile(filepath.Join(dir, "tcp"), []byte(table), 0o644)
	ls, err := scanListeners(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].inode != 4242 || ls[0].addr.String() != "127.0.0.1:8080" {
		t.Fatalf("listeners %v", ls)
	}
}

// A service on 127.0.0.1 only becomes reachable on the external address, and
// stops being so when it closes or the forwarder stops; no goroutine stays.
func TestForwardLoopbackService(t *testing.T) {
	external := netip.MustParseAddr("127.0.0.2")
	if ln, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		t.Skipf("127.0.0.2 is not usable here: %v", err)
	} else {
		ln.Close()
	}
	before := runtime.NumGoroutine()

	svc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := svc.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "echo:%s", line)
			}()
		}
	}()
	port := svc.Addr().(*net.TCPAddr).Port
	target := fmt.Sprintf("127.0.0.2:%d", port)

	f := New(external, 50*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.Start()
	var reply string
	waitfor.NoError(t, 10*time.Second, fmt.Sprintf("port %d to be forwarded", port), func() error {
		c, err := net.Dial("tcp", target)
		if err != nil {
			return err
		}
		fmt.Fprintf(c, "hello\n")
		b, _ := io.ReadAll(c)
		c.Close()
		if reply = string(b); reply == "" {
			return errors.New("no reply")
		}
		return nil
	})
	if reply != "echo:hello\n" {
		t.Fatalf("reply %q", reply)
	}

	svc.Close()
	waitClosed(t, target)

	f.Stop()
	if f.Running() {
		t.Fatal("running after Stop")
	}
	f.Restart()
	f.Stop()
	waitfor.NoError(t, 5*time.Second, "the forwarder's goroutines to end", func() error {
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			return fmt.Errorf("goroutines: %d > %d\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		return nil
	})
}

func waitClosed(t *testing.T, addr string) {
	t.Helper()
	waitfor.True(t, 10*time.Second, addr+" to refuse connections after its service closed", func() bool {
		c, err := net.Dial("tcp", addr)
		if c != nil {
			c.Close()
		}
		return err != nil && strings.Contains(err.Error(), "refused")
	})
}

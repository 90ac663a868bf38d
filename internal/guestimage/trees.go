package guestimage

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Host files the minimal image is made of (Debian busybox-static, bash-static).
const (
	busyboxPath    = "/bin/busybox"
	bashStaticPath = "/bin/bash-static"
)

// The default user that commands run as in the base image.
const (
	userName = "user"
	userID   = 1000
)

func mkdirs(root string, mode os.FileMode, dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), mode); err != nil {
			return err
		}
	}
	return nil
}

// minimalTree: busybox for every tool, bash (the E2B SDKs run every command
// through it), root and an unprivileged user.
func (b *builder) minimalTree(ctx context.Context, root string) error {
	if err := mkdirs(root, 0o755, "bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "etc", "dev", "proc", "sys", "run", "var/tmp", "root", "home/"+userName, "lib/modules"); err != nil {
		return err
	}
	if err := mkdirs(root, 0o1777, "tmp"); err != nil {
		return err
	}
	_ = os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	_ = os.Chmod(filepath.Join(root, "var/tmp"), 0o1777)
	_ = os.Chmod(filepath.Join(root, "root"), 0o700)
	if err := copyFile(busyboxPath, filepath.Join(root, "bin/busybox"), 0o755); err != nil {
		return fmt.Errorf("busybox (install busybox-static): %w", err)
	}
	if err := copyFile(bashStaticPath, filepath.Join(root, "bin/bash"), 0o755); err != nil {
		return fmt.Errorf("bash (install bash-static): %w", err)
	}
	out, err := exec.CommandContext(ctx, busyboxPath, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("list busybox applets: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if filepath.Base(applet) == "init" || filepath.Base(applet) == "bash" {
			continue // wrenn-init is init; bash is the real one
		}
		link := filepath.Join(root, applet)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("/bin/busybox", link); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/bash\n" +
			fmt.Sprintf("%s:x:%d:%d::/home/%s:/bin/bash\n", userName, userID, userID, userName) +
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group": "root:x:0:\ntty:x:5:\n" +
			fmt.Sprintf("%s:x:%d:\n", userName, userID) +
			"nogroup:x:65534:\n",
		"etc/shadow":      "root:*:19000:0:99999:7:::\n" + userName + ":*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
		"etc/hostname":    "sandbox\n",
		"etc/hosts":       "127.0.0.1 localhost\n::1 localhost\n",
		"etc/resolv.conf": "",
		"etc/profile":     "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1='\\u@\\h:\\w\\$ '\n",
	}
	for name, content := range files {
		mode := os.FileMode(0o644)
		if name == "etc/shadow" {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), mode); err != nil {
			return err
		}
	}
	return os.Chown(filepath.Join(root, "home", userName), userID, userID)
}

// Packages of the base image, beyond debootstrap's minbase.
var basePackages = []string{"python3", "python3-pip", "python-is-python3", "git", "curl", "ca-certificates", "socat", "chrony", "sudo", "procps", "bash", "iproute2"}

func (b *builder) mirror() string {
	if b.opts.Mirror != "" {
		return b.opts.Mirror
	}
	return "http://deb.debian.org/debian"
}

// baseTree: Debian bookworm (minbase) with the tools agents expect, and an
// unprivileged user with passwordless sudo as the default user.
func (b *builder) baseTree(ctx context.Context, root string) error {
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return errNoBase
	}
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+strings.Join(basePackages, ","), "bookworm", root, b.mirror())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if b.opts.Progress != nil {
		cmd.Stdout = &prefixWriter{w: b.opts.Progress, buf: &out}
		cmd.Stderr = cmd.Stdout
	}
	if err := cmd.Run(); err != nil {
		tail := out.String()
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return fmt.Errorf("debootstrap bookworm from %s: %v\n%s", b.mirror(), err, tail)
	}
	chroot := func(args ...string) error {
		c := exec.CommandContext(ctx, "chroot", append([]string{root}, args...)...)
		c.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive"}
		if o, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("in the image, %s: %v: %s", strings.Join(args, " "), err, o)
		}
		return nil
	}
	if err := chroot("useradd", "--create-home", "--uid", fmt.Sprint(userID), "--shell", "/bin/bash", userName); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "etc/sudoers.d/"+userName), []byte(userName+" ALL=(ALL) NOPASSWD:ALL\n"), 0o440); err != nil {
		return err
	}
	if err := chroot("apt-get", "clean"); err != nil {
		return err
	}
	for _, junk := range []string{"var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/locale"} {
		p := filepath.Join(root, junk)
		_ = os.RemoveAll(p)
		_ = os.MkdirAll(p, 0o755)
	}
	_ = os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("sandbox\n"), 0o644)
	return nil
}

// prefixWriter streams a long step's output as progress and keeps it for the error.
type prefixWriter struct {
	w   interface{ Write([]byte) (int, error) }
	buf *bytes.Buffer
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf.Write(b)
	for line := range strings.Lines(string(b)) {
		fmt.Fprintf(p.w, "    %s", line)
	}
	return len(b), nil
}

// installWrenn puts wrenn-init and envd into the tree.
func (b *builder) installWrenn(root string) error {
	if err := os.MkdirAll(filepath.Join(root, "sbin"), 0o755); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(root, "sbin/init"))
	if err := copyFile(b.opts.Init, filepath.Join(root, "sbin/init"), 0o755); err != nil {
		return err
	}
	return copyFile(b.opts.Envd, filepath.Join(root, "usr/bin/envd"), 0o755)
}

// baselineTree is the minimal tree with a shell script as init.
func (b *builder) baselineTree(ctx context.Context, root string) error {
	if err := b.minimalTree(ctx, root); err != nil {
		return err
	}
	script := `#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
ip link set lo up
ip addr add 169.254.0.21/30 dev eth0
ip link set eth0 up
mkdir -p /www && echo ok > /www/index.html
exec httpd -f -p 49983 -h /www
`
	_ = os.Remove(filepath.Join(root, "sbin/init"))
	return os.WriteFile(filepath.Join(root, "sbin/init"), []byte(script), 0o755)
}

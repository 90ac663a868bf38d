package envdclient

import (
	"context"
	"encoding/base64"
	"time"

	"connectrpc.com/connect"

	fspb "git.omukk.dev/wrenn/sandbox/proto/envd/filesystem"
)

// asUser selects the guest user a call runs as; envd reads it from Basic
// auth, as E2B's does. Empty is envd's default user.
func asUser[T any](r *connect.Request[T], user string) *connect.Request[T] {
	if user != "" {
		r.Header().Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":")))
	}
	return r
}

// Entry is a file or directory in the guest.
type Entry struct {
	Name        string
	Path        string
	IsDir       bool
	Size        int64
	Permissions string
	// Modified is zero when envd does not say.
	Modified time.Time
}

func entryOf(e *fspb.EntryInfo) Entry {
	out := Entry{Name: e.GetName(), Path: e.GetPath(), IsDir: e.GetType() == fspb.FileType_FILE_TYPE_DIRECTORY, Size: e.GetSize(), Permissions: e.GetPermissions()}
	if e.GetModifiedTime() != nil {
		out.Modified = e.GetModifiedTime().AsTime()
	}
	return out
}

// ListDir lists a directory, depth levels down, as user.
func (c *Client) ListDir(ctx context.Context, path, user string, depth uint32) ([]Entry, error) {
	r, err := c.fs.ListDir(ctx, asUser(connect.NewRequest(&fspb.ListDirRequest{Path: path, Depth: depth}), user))
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(r.Msg.GetEntries()))
	for _, e := range r.Msg.GetEntries() {
		out = append(out, entryOf(e))
	}
	return out, nil
}

// MakeDir creates a directory and its parents, as user.
func (c *Client) MakeDir(ctx context.Context, path, user string) (Entry, error) {
	r, err := c.fs.MakeDir(ctx, asUser(connect.NewRequest(&fspb.MakeDirRequest{Path: path}), user))
	if err != nil {
		return Entry{}, err
	}
	return entryOf(r.Msg.GetEntry()), nil
}

// Remove removes a file or a directory with its contents, as user.
func (c *Client) Remove(ctx context.Context, path, user string) error {
	_, err := c.fs.Remove(ctx, asUser(connect.NewRequest(&fspb.RemoveRequest{Path: path}), user))
	return err
}

// Move renames or moves a file or directory, as user.
func (c *Client) Move(ctx context.Context, from, to, user string) (Entry, error) {
	r, err := c.fs.Move(ctx, asUser(connect.NewRequest(&fspb.MoveRequest{Source: from, Destination: to}), user))
	if err != nil {
		return Entry{}, err
	}
	return entryOf(r.Msg.GetEntry()), nil
}

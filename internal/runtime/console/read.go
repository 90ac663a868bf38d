package console

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FileName is a console's file in the sandbox's directory; the part
// before the last rotation is FileName+".1".
const FileName = "console.log"

// StampLayout is the keeper's stamp on each line: UTC with nanoseconds,
// fixed width.
const StampLayout = "2006-01-02T15:04:05.000000000Z"

// MaxLine bounds the message of one entry; a longer line (a guest can
// write megabytes without a newline) is cut and marked truncated.
const MaxLine = 8 << 10

// Level is a log entry's severity, as E2B names them.
type Level string

const (
	Debug Level = "debug"
	Info  Level = "info"
	Warn  Level = "warn"
	Error Level = "error"
)

var levelRank = map[Level]int{Debug: 0, Info: 1, Warn: 2, Error: 3}

// ParseLevel accepts a level's name ("" is no level).
func ParseLevel(s string) (Level, bool) {
	l := Level(strings.ToLower(s))
	_, ok := levelRank[l]
	return l, ok || s == ""
}

// AtLeast reports whether l is min or more severe; every level is at
// least the empty one.
func (l Level) AtLeast(min Level) bool { return min == "" || levelRank[l] >= levelRank[min] }

// Entry is one line of a console.
type Entry struct {
	// Time is the host's stamp of the line: unique within the console.
	Time  time.Time
	Level Level
	// Message is the line, or its msg for a line in slog's text format
	// (wrenn-init's and envd's), whose other keys are Fields.
	Message string
	Fields  map[string]string
	// Line is the line as the guest wrote it (without the stamp).
	Line string
}

// Query selects entries; zero values select everything.
type Query struct {
	Start, End time.Time // both inclusive
	MinLevel   Level
	Search     string // a substring of the message (case-sensitive)
	// Limit keeps at most this many entries: the oldest of those
	// selected, or the newest with Newest.
	Limit  int
	Newest bool
}

func (q Query) match(e Entry) bool {
	return (q.Start.IsZero() || !e.Time.Before(q.Start)) && (q.End.IsZero() || !e.Time.After(q.End)) &&
		e.Level.AtLeast(q.MinLevel) && strings.Contains(e.Message, q.Search)
}

// Position is where a reader of a console has got to: a byte offset in
// the file with inode Ino.
type Position struct {
	Ino uint64
	Off int64
}

// Read returns the entries of the console in dir that q selects, oldest
// first, and the position after its last complete line (from which
// Follow goes on). A console that does not exist (yet) is empty.
func Read(dir string, q Query) ([]Entry, Position, error) {
	for range 5 {
		out, pos, err := readOnce(dir, q)
		if !errors.Is(err, errRotated) {
			return out, pos, err
		}
	}
	return nil, Position{}, errors.New("the console rotated during every read; try again")
}

var errRotated = errors.New("rotated while reading")

func readOnce(dir string, q Query) ([]Entry, Position, error) {
	cur, err := os.Open(filepath.Join(dir, FileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, Position{}, nil
	}
	if err != nil {
		return nil, Position{}, err
	}
	defer cur.Close()
	ino, size, err := inode(cur)
	if err != nil {
		return nil, Position{}, err
	}
	sel := selector{q: q}
	prev, err := os.Open(filepath.Join(dir, FileName+".1"))
	if err == nil {
		pino, psize, err := inode(prev)
		if err == nil && pino == ino {
			err = errRotated // the file opened as current is now the previous one
		}
		if err == nil {
			err = sel.file(prev, 0, psize)
		}
		prev.Close()
		if err != nil {
			return nil, Position{}, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, Position{}, err
	}
	end, err := sel.lines(cur, 0, size)
	if err != nil {
		return nil, Position{}, err
	}
	// The line being written is shown too; Follow starts at it (a
	// follower skips what it was shown by its stamp).
	if tail, err := readAt(cur, end, size-end); err == nil && len(tail) > 0 && !sel.full {
		sel.add(parseLine(tail, &sel.last))
	}
	return sel.entries(), Position{Ino: ino, Off: end}, nil
}

// selector applies a query to entries as they are read, keeping no more
// than the limit.
type selector struct {
	q    Query
	out  []Entry
	last time.Time // the stamp of the line before: a line without one takes it
	full bool      // the oldest Limit entries are in: stop reading
}

func (s *selector) add(e Entry) {
	if !s.q.match(e) {
		return
	}
	s.out = append(s.out, e)
	switch {
	case s.q.Limit <= 0:
	case s.q.Newest:
		// Trimmed in halves, so that each entry is copied a bounded
		// number of times however long the log.
		if len(s.out) >= 2*s.q.Limit {
			s.out = append(s.out[:0], s.out[len(s.out)-s.q.Limit:]...)
		}
	case len(s.out) >= s.q.Limit:
		s.out, s.full = s.out[:s.q.Limit], true
	}
}

// entries is what was selected, no more than the limit.
func (s *selector) entries() []Entry {
	if s.q.Limit > 0 && len(s.out) > s.q.Limit {
		return s.out[len(s.out)-s.q.Limit:]
	}
	return s.out
}

// file adds every line of f from off to size, the last one too when it
// has no newline (a file that rotated mid-line).
func (s *selector) file(f *os.File, off, size int64) error {
	end, err := s.lines(f, off, size)
	if err != nil {
		return err
	}
	if tail, err := readAt(f, end, size-end); err == nil && len(tail) > 0 {
		s.add(parseLine(tail, &s.last))
	}
	return nil
}

// lines adds the complete lines of f between off and size and returns
// the offset after the last one.
func (s *selector) lines(f *os.File, off, size int64) (int64, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(f, off, size-off), 64<<10)
	pos := off
	var head []byte   // the start of a line longer than the buffer, capped
	var headLen int64 // its length before the cap
	for !s.full {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			line := chunk
			if head != nil {
				line = append(head, chunk[:min(len(chunk), max(0, MaxLine+64-len(head)))]...)
			}
			s.add(parseLine(line, &s.last))
			pos += headLen + int64(len(chunk))
			head, headLen = nil, 0
		case errors.Is(err, bufio.ErrBufferFull):
			head = append(head, chunk[:min(len(chunk), max(0, MaxLine+64-len(head)))]...)
			headLen += int64(len(chunk))
		case err == io.EOF:
			return pos, nil // what is left is a line being written
		default:
			return pos, err
		}
	}
	return pos, nil
}

func readAt(f *os.File, off, n int64) ([]byte, error) {
	if n <= 0 {
		return nil, nil
	}
	b := make([]byte, min(n, MaxLine+64))
	m, err := f.ReadAt(b, off)
	if err == io.EOF {
		err = nil
	}
	return b[:m], err
}

func inode(f *os.File) (uint64, int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, errors.New("no inode")
	}
	return st.Ino, fi.Size(), nil
}

// cutStamp splits a line into the keeper's stamp and the rest.
func cutStamp(line []byte) (time.Time, []byte, bool) {
	n := len(StampLayout)
	if len(line) < n+1 || line[n] != ' ' {
		return time.Time{}, line, false
	}
	t, err := time.Parse(StampLayout, string(line[:n]))
	if err != nil {
		return time.Time{}, line, false
	}
	return t, line[n+1:], true
}

// parseLine turns one line of a console into an entry; last is the stamp
// of the line before, which a line without one (a file written before
// stamps) takes, and is updated.
func parseLine(raw []byte, last *time.Time) Entry {
	t, rest, ok := cutStamp(raw)
	if ok {
		*last = t
	} else {
		t = *last
	}
	rest = bytes.TrimRight(rest, "\r\n")
	truncated := len(rest) > MaxLine
	if truncated {
		rest = rest[:MaxLine] // a rune cut here becomes U+FFFD below
	}
	line := strings.ToValidUTF8(string(rest), "\uFFFD")
	e := Entry{Time: t, Level: Info, Message: line, Fields: map[string]string{}, Line: line}
	if kv, ok := parseText(line); ok {
		for k, v := range kv {
			switch k {
			case "time": // the guest's clock: the host's stamp is the time
			case "level":
				e.Level = slogLevel(v)
			case "msg":
				e.Message = v
			default:
				e.Fields[k] = v
			}
		}
	}
	if truncated {
		e.Fields["truncated"] = "true"
	}
	return e
}

// slogLevel maps slog's level names (with offsets such as "WARN+2") to E2B's.
func slogLevel(v string) Level {
	switch {
	case strings.HasPrefix(v, "DEBUG"):
		return Debug
	case strings.HasPrefix(v, "WARN"):
		return Warn
	case strings.HasPrefix(v, "ERROR"):
		return Error
	}
	return Info
}

// parseText reads a line in slog's text format (time=… level=… msg=…
// key=value …, values quoted as Go strings when they need it); any other
// line is not one.
func parseText(line string) (map[string]string, bool) {
	if !strings.HasPrefix(line, "time=") {
		return nil, false
	}
	kv := map[string]string{}
	for s := line; s != ""; {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(s[:eq], " \"") {
			return nil, false
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, false
			}
			if val, err = strconv.Unquote(q); err != nil {
				return nil, false
			}
			s = s[len(q):]
		} else {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		kv[key] = val
		if s != "" && s[0] != ' ' {
			return nil, false
		}
		s = strings.TrimLeft(s, " ")
	}
	_, hasLevel := kv["level"]
	_, hasMsg := kv["msg"]
	return kv, hasLevel && hasMsg
}

// PollInterval is how often Follow looks for new lines.
var PollInterval = 200 * time.Millisecond

// Follow calls fn with the entries q selects (its Limit aside) written to
// the console in dir after from, as they come, until ctx ends, fn fails,
// or gone reports that the console's sandbox is gone. Lines are passed
// on once complete. Follow keeps the file it reads open, so a rotation
// loses nothing; a console that rotates twice between two polls loses
// the file in between (each file holds MaxBytes: a guest writing
// megabytes a second).
func Follow(ctx context.Context, dir string, from Position, q Query, gone func() bool, fn func([]Entry) error) error {
	q.Limit = 0
	t := tailer{dir: dir, pos: from}
	defer t.close()
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		sel := selector{q: q, last: t.last}
		if err := t.poll(&sel); err != nil {
			return err
		}
		t.last = sel.last
		if len(sel.out) > 0 {
			if err := fn(sel.out); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if gone() {
			return nil
		}
	}
}

// tailer reads a console as it grows, across rotations.
type tailer struct {
	dir  string
	pos  Position // in f, once open
	f    *os.File
	last time.Time
}

func (t *tailer) close() {
	if t.f != nil {
		t.f.Close()
	}
}

// poll adds what was written since the last poll.
func (t *tailer) poll(sel *selector) error {
	path := filepath.Join(t.dir, FileName)
	if t.f == nil {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		ino, _, err := inode(f)
		if err != nil {
			f.Close()
			return err
		}
		if ino != t.pos.Ino {
			// It rotated since the read that gave the position: the
			// rest of that file is the previous one.
			if prev, err := os.Open(path + ".1"); err == nil {
				if pino, psize, err := inode(prev); err == nil && pino == t.pos.Ino {
					_ = sel.file(prev, t.pos.Off, psize)
				}
				prev.Close()
			}
			t.pos = Position{Ino: ino}
		}
		t.f = f
	}
	_, size, err := inode(t.f)
	if err != nil {
		return err
	}
	if t.pos.Off, err = sel.lines(t.f, t.pos.Off, size); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino != t.pos.Ino {
			// Rotated: the keeper writes no more to the file held, so
			// take the rest of it, an unfinished line too, and go on
			// with the new one.
			_, size, _ := inode(t.f)
			_ = sel.file(t.f, t.pos.Off, size)
			t.f.Close()
			t.f, t.pos = nil, Position{}
			return t.poll(sel)
		}
	}
	return nil
}

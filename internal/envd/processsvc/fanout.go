package processsvc

import (
	"bytes"
	"errors"
	"sync"
	"time"

	pb "git.omukk.dev/wrenn/sandbox/proto/envd/process"
)

// Output fan-out. Every client following a process has its own queue with a
// byte budget. The reader publishing a chunk waits for a full queue to drain,
// so a slow client slows the process down (like a terminal would) and never
// loses data; a client that makes no progress at all for stallTimeout is cut
// off with an error, so a stuck client cannot hold the process or the other
// clients forever.

const subscriberBudget = 4 << 20

// stallTimeout is a variable so that tests can shorten it.
var stallTimeout = 10 * time.Second

var errSubscriberStalled = errors.New("client did not read process output for 10s; its stream was closed (the process keeps running; reconnect with Connect)")

type subscriber struct {
	mu      sync.Mutex
	queue   []*pb.ProcessEvent_DataEvent
	bytes   int
	evicted bool
	ready   chan struct{} // data queued (capacity 1)
	drained chan struct{} // data taken (capacity 1)
}

func newSubscriber() *subscriber {
	return &subscriber{ready: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// take returns everything queued; the error is set once the subscriber was evicted.
func (s *subscriber) take() ([]*pb.ProcessEvent_DataEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.evicted {
		return nil, errSubscriberStalled
	}
	q := s.queue
	s.queue = nil
	s.bytes = 0
	if len(q) > 0 {
		signal(s.drained)
	}
	return q, nil
}

// push queues ev, waiting while the budget is exhausted. It gives up on the
// subscriber after stallTimeout without progress, or when stop closes.
func (s *subscriber) push(ev *pb.ProcessEvent_DataEvent, size int, stop <-chan struct{}) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		s.mu.Lock()
		if s.evicted {
			s.mu.Unlock()
			return
		}
		if s.bytes == 0 || s.bytes+size <= subscriberBudget {
			s.queue = append(s.queue, ev)
			s.bytes += size
			s.mu.Unlock()
			signal(s.ready)
			return
		}
		s.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(stallTimeout)
		} else {
			timer.Reset(stallTimeout)
		}
		select {
		case <-s.drained:
		case <-timer.C:
			s.evict()
			return
		case <-stop:
			s.evict()
			return
		}
	}
}

func (s *subscriber) evict() {
	s.mu.Lock()
	s.evicted = true
	s.queue = nil
	s.bytes = 0
	s.mu.Unlock()
	signal(s.ready)
	signal(s.drained)
}

// fanout delivers output events to every subscribed client in order.
type fanout struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
	// recent is a terminal's latest output, at most recentMax bytes, which
	// a client that attaches again can have first (replay); cut is set once
	// older output was dropped from it.
	recent    []byte
	recentMax int
	cut       bool
}

// replayBytes is how much of a terminal's latest output it keeps for a
// client that attaches again: a few screens and their scrollback.
const replayBytes = 64 << 10

func newFanout() *fanout { return &fanout{subs: map[*subscriber]struct{}{}} }

// keepRecent makes f keep its latest output for replay.
func (f *fanout) keepRecent(max int) { f.recentMax = max }

func (f *fanout) subscribe() *subscriber { return f.subscribeReplay(false) }

// subscribeReplay subscribes; with replay, the new subscriber's queue
// starts with the output f kept, so that it sees it once and then all
// that follows, without a gap. Kept output that was cut starts at a line.
func (f *fanout) subscribeReplay(replay bool) *subscriber {
	s := newSubscriber()
	f.mu.Lock()
	defer f.mu.Unlock()
	if replay && len(f.recent) > 0 {
		b := f.recent
		if f.cut {
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				b = b[i+1:]
			}
		}
		if len(b) > 0 {
			s.queue = append(s.queue, &pb.ProcessEvent_DataEvent{Output: &pb.ProcessEvent_DataEvent_Pty{Pty: bytes.Clone(b)}})
			s.bytes = len(b)
			signal(s.ready)
		}
	}
	f.subs[s] = struct{}{}
	return s
}

// remember keeps b as the latest output. Precondition: f.mu held.
func (f *fanout) remember(b []byte) {
	if f.recentMax == 0 || len(b) == 0 {
		return
	}
	if len(b) >= f.recentMax {
		f.recent = append(f.recent[:0], b[len(b)-f.recentMax:]...)
		f.cut = true
		return
	}
	if over := len(f.recent) + len(b) - f.recentMax; over > 0 {
		f.recent = f.recent[:copy(f.recent, f.recent[over:])]
		f.cut = true
	}
	f.recent = append(f.recent, b...)
}

func (f *fanout) unsubscribe(s *subscriber) {
	f.mu.Lock()
	delete(f.subs, s)
	f.mu.Unlock()
	s.evict() // releases a publisher waiting on it
}

// publish hands ev to every subscriber; output published while nobody
// follows the process is discarded, as in E2B's envd, except what a
// terminal keeps for replay.
func (f *fanout) publish(ev *pb.ProcessEvent_DataEvent, size int, stop <-chan struct{}) {
	f.mu.Lock()
	f.remember(payload(ev))
	subs := make([]*subscriber, 0, len(f.subs))
	for s := range f.subs {
		subs = append(subs, s)
	}
	f.mu.Unlock()
	for _, s := range subs {
		s.push(ev, size, stop)
	}
}

// coalesce joins consecutive events of the same stream, up to maxChunk
// bytes each: output that queued up while the client was busy goes out in
// as few messages as possible, in order.
func coalesce(events []*pb.ProcessEvent_DataEvent) []*pb.ProcessEvent_DataEvent {
	if len(events) < 2 {
		return events
	}
	out := events[:0:0]
	var cur *pb.ProcessEvent_DataEvent
	for _, ev := range events {
		if cur != nil && sameStream(cur, ev) && len(payload(cur))+len(payload(ev)) <= maxChunk {
			setPayload(cur, append(payload(cur), payload(ev)...))
			continue
		}
		if cur != nil {
			out = append(out, cur)
		}
		// A copy: the queued event may be shared with other clients.
		cur = &pb.ProcessEvent_DataEvent{}
		switch o := ev.Output.(type) {
		case *pb.ProcessEvent_DataEvent_Stdout:
			cur.Output = &pb.ProcessEvent_DataEvent_Stdout{Stdout: o.Stdout[:len(o.Stdout):len(o.Stdout)]}
		case *pb.ProcessEvent_DataEvent_Stderr:
			cur.Output = &pb.ProcessEvent_DataEvent_Stderr{Stderr: o.Stderr[:len(o.Stderr):len(o.Stderr)]}
		case *pb.ProcessEvent_DataEvent_Pty:
			cur.Output = &pb.ProcessEvent_DataEvent_Pty{Pty: o.Pty[:len(o.Pty):len(o.Pty)]}
		default:
			cur = ev
		}
	}
	return append(out, cur)
}

func payload(ev *pb.ProcessEvent_DataEvent) []byte {
	switch o := ev.Output.(type) {
	case *pb.ProcessEvent_DataEvent_Stdout:
		return o.Stdout
	case *pb.ProcessEvent_DataEvent_Stderr:
		return o.Stderr
	case *pb.ProcessEvent_DataEvent_Pty:
		return o.Pty
	}
	return nil
}

func setPayload(ev *pb.ProcessEvent_DataEvent, b []byte) {
	switch o := ev.Output.(type) {
	case *pb.ProcessEvent_DataEvent_Stdout:
		o.Stdout = b
	case *pb.ProcessEvent_DataEvent_Stderr:
		o.Stderr = b
	case *pb.ProcessEvent_DataEvent_Pty:
		o.Pty = b
	}
}

func sameStream(a, b *pb.ProcessEvent_DataEvent) bool {
	switch a.Output.(type) {
	case *pb.ProcessEvent_DataEvent_Stdout:
		_, ok := b.Output.(*pb.ProcessEvent_DataEvent_Stdout)
		return ok
	case *pb.ProcessEvent_DataEvent_Stderr:
		_, ok := b.Output.(*pb.ProcessEvent_DataEvent_Stderr)
		return ok
	case *pb.ProcessEvent_DataEvent_Pty:
		_, ok := b.Output.(*pb.ProcessEvent_DataEvent_Pty)
		return ok
	}
	return false
}

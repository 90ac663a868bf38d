package processsvc

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
	pb "git.omukk.dev/wrenn/sandbox/proto/envd/process"
)

func chunk(b byte, n int) *pb.ProcessEvent_DataEvent {
	return &pb.ProcessEvent_DataEvent{Output: &pb.ProcessEvent_DataEvent_Stdout{Stdout: bytes.Repeat([]byte{b}, n)}}
}

// A client that never reads is cut off after the stall timeout, and a client
// that reads gets every byte, in order, meanwhile and afterwards.
func TestStuckSubscriberIsEvictedOthersGetEverything(t *testing.T) {
	old := stallTimeout
	stallTimeout = 300 * time.Millisecond
	defer func() { stallTimeout = old }()

	f := newFanout()
	stuck := f.subscribe()
	live := f.subscribe()
	stop := make(chan struct{})

	const chunks, size = 400, 32 << 10 // 12.5 MiB, three times the budget
	var got bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range live.ready {
			evs, err := live.take()
			if err != nil {
				t.Errorf("live subscriber: %v", err)
				return
			}
			for _, ev := range evs {
				got.Write(ev.GetStdout())
			}
			if got.Len() == chunks*size {
				return
			}
		}
	}()
	for i := range chunks {
		f.publish(chunk(byte(i), size), size, stop)
	}
	wg.Wait()
	for i := range chunks {
		if got.Bytes()[i*size] != byte(i) {
			t.Fatalf("chunk %d out of order", i)
		}
	}
	if _, err := stuck.take(); err != errSubscriberStalled {
		t.Fatalf("stuck subscriber: %v, want eviction", err)
	}
	f.unsubscribe(stuck)
	f.unsubscribe(live)
}

// Unsubscribing releases a publisher blocked on that subscriber at once.
func TestUnsubscribeReleasesPublisher(t *testing.T) {
	f := newFanout()
	s := f.subscribe()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 3 {
			f.publish(chunk('x', subscriberBudget), subscriberBudget, stop)
		}
	}()
	// The publisher's first chunk fills the client's budget; the second waits.
	waitfor.True(t, 10*time.Second, "the publisher to fill the client's budget", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.bytes == subscriberBudget
	})
	f.unsubscribe(s)
	select {
	case <-done:
	case <-time.After(stallTimeout / 2):
		t.Fatal("publisher stayed blocked on an unsubscribed client")
	}
}

// Queued output is sent in as few messages as fit maxChunk, each stream's
// bytes in order, stdout and stderr never mixed, and the queued events (which
// other clients share) untouched.
func TestCoalesceKeepsOrderAndStreams(t *testing.T) {
	errChunk := func(b byte, n int) *pb.ProcessEvent_DataEvent {
		return &pb.ProcessEvent_DataEvent{Output: &pb.ProcessEvent_DataEvent_Stderr{Stderr: bytes.Repeat([]byte{b}, n)}}
	}
	in := []*pb.ProcessEvent_DataEvent{chunk('a', 100), chunk('b', 100), errChunk('e', 10), errChunk('f', 10), chunk('c', 5)}
	for range 10 {
		in = append(in, chunk('z', maxChunk/4))
	}
	before := make([][]byte, len(in))
	for i, ev := range in {
		before[i] = bytes.Clone(payload(ev))
	}
	out := coalesce(in)
	var got []string
	for _, ev := range out {
		kind := "out"
		if _, ok := ev.Output.(*pb.ProcessEvent_DataEvent_Stderr); ok {
			kind = "err"
		}
		if len(payload(ev)) > maxChunk {
			t.Errorf("a message of %d bytes, more than %d", len(payload(ev)), maxChunk)
		}
		got = append(got, kind+":"+string(payload(ev)[:1])+":"+strconv.Itoa(len(payload(ev))))
	}
	want := []string{"out:a:200", "err:e:20", "out:c:" + strconv.Itoa(5+3*maxChunk/4), "out:z:" + strconv.Itoa(maxChunk), "out:z:" + strconv.Itoa(3*maxChunk/4)}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("coalesced to %v, want %v", got, want)
	}
	for i, ev := range in {
		if !bytes.Equal(payload(ev), before[i]) {
			t.Fatalf("queued event %d was modified", i)
		}
	}
}

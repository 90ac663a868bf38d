package hostapi

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"
)

// A backend that answers before it has read the request body, and a client
// that sends the rest of its body only after the first line of the answer:
// through ServeProxied both directions flow at once. A proxy that is not
// full duplex blocks reading the body when the answer's headers go out,
// and the first line never arrives.
func TestServeProxiedIsFullDuplex(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, "got "+string(body)+"\n")
	}))
	defer backend.Close()
	target, _ := url.Parse(backend.URL)
	rp := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		FlushInterval: -1,
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ServeProxied(w, r, rp) }))
	defer proxy.Close()

	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", proxy.URL, pr)
	req.ContentLength = 10
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		done <- result{resp, err}
	}()
	io.WriteString(pw, "hello")
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		pw.Close()
		t.Fatal("no response while the request body is half sent: the proxy is not full duplex")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	defer res.resp.Body.Close()
	br := bufio.NewReader(res.resp.Body)
	line := make(chan string, 1)
	go func() { l, _ := br.ReadString('\n'); line <- l }()
	select {
	case l := <-line:
		if l != "first\n" {
			t.Fatalf("first line %q", l)
		}
	case <-time.After(10 * time.Second):
		pw.Close()
		t.Fatal("the first line did not arrive while the request body is half sent: the proxy is not full duplex")
	}
	io.WriteString(pw, "world")
	pw.Close()
	if l, _ := br.ReadString('\n'); l != "got helloworld\n" {
		t.Fatalf("second line %q", l)
	}
}

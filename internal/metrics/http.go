package metrics

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Requests counts HTTP requests by route pattern, method and status, and
// their latency. The route is chi's pattern ("/v1/sandboxes/{sandboxID}"),
// never the raw path: IDs in label values would make a series per
// sandbox.
type Requests struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewRequests registers <prefix>_http_requests_total{route,method,code}
// and <prefix>_http_request_duration_seconds{route,method}.
func NewRequests(reg prometheus.Registerer, prefix string) *Requests {
	q := &Requests{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: prefix + "_http_requests_total",
			Help: "HTTP requests by route pattern, method and status code."}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: prefix + "_http_request_duration_seconds",
			Help: "HTTP request latency by route pattern and method (streams: until they end).", Buckets: LatencyBuckets}, []string{"route", "method"}),
	}
	reg.MustRegister(q.total, q.duration)
	return q
}

// Unmatched labels requests no route took (404s, the dashboard's files).
const Unmatched = "unmatched"

// Middleware instruments a chi router. It may sit outside the router: it
// gives chi the routing context up front so that the pattern chi matched
// is still there when the handler returns.
func (q *Requests) Middleware(next http.Handler) http.Handler {
	inner := q.Wrap(next, func(r *http.Request) string {
		route := chi.RouteContext(r.Context()).RoutePattern()
		if route == "" || route == "/*" {
			return Unmatched
		}
		return route
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if chi.RouteContext(r.Context()) == nil {
			r = r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, chi.NewRouteContext()))
		}
		inner.ServeHTTP(w, r)
	})
}

// Wrap instruments next; routeOf names the route a request took, asked
// once the request is served (a fixed set of names, never a raw path).
func (q *Requests) Wrap(next http.Handler, routeOf func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w}
		start := time.Now()
		next.ServeHTTP(rec, r)
		method := knownMethod(r.Method)
		route := routeOf(r)
		q.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
		q.total.WithLabelValues(route, method, strconv.Itoa(rec.status())).Inc()
	})
}

// knownMethod keeps the method label to the methods HTTP defines.
func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// recorder notes the status a handler sent; it passes Flush and Hijack
// through (streams, WebSockets) and unwraps for http.ResponseController.
type recorder struct {
	http.ResponseWriter
	code     int
	hijacked bool
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() { _ = http.NewResponseController(r.ResponseWriter).Flush() }

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.hijacked = true
	}
	return c, rw, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) status() int {
	switch {
	case r.code != 0:
		return r.code
	case r.hijacked:
		return http.StatusSwitchingProtocols
	}
	return http.StatusOK
}

// Proxy counts sandbox-proxy traffic: body bytes each way (WebSocket and
// other upgraded connections included) and the requests open now.
type Proxy struct {
	in, out prometheus.Counter
	open    prometheus.Gauge
}

// NewProxy registers <prefix>_proxy_bytes_total{direction} and
// <prefix>_proxy_open_streams.
func NewProxy(reg prometheus.Registerer, prefix string) *Proxy {
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: prefix + "_proxy_bytes_total",
		Help: "Bytes through the sandbox proxy: in = from clients towards sandboxes, out = back to clients."}, []string{"direction"})
	open := prometheus.NewGauge(prometheus.GaugeOpts{Name: prefix + "_proxy_open_streams",
		Help: "Requests and upgraded connections open through the sandbox proxy."})
	reg.MustRegister(bytes, open)
	return &Proxy{in: bytes.WithLabelValues("in"), out: bytes.WithLabelValues("out"), open: open}
}

// Wrap counts what next serves.
func (p *Proxy) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.open.Inc()
		defer p.open.Dec()
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &countingBody{ReadCloser: r.Body, c: p.in}
		}
		next.ServeHTTP(&countingWriter{recorder: recorder{ResponseWriter: w}, p: p}, r)
	})
}

type countingBody struct {
	io.ReadCloser
	c prometheus.Counter
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.Add(float64(n))
	return n, err
}

type countingWriter struct {
	recorder
	p *Proxy
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.recorder.Write(b)
	w.p.out.Add(float64(n))
	return n, err
}

// Hijack counts the upgraded connection's bytes too.
func (w *countingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := w.recorder.Hijack()
	if err != nil {
		return c, rw, err
	}
	// What passes through rw (the response head, bytes the server had
	// read ahead) is not counted: a proxy copies the stream on the conn.
	return &countingConn{Conn: c, p: w.p}, rw, nil
}

type countingConn struct {
	net.Conn
	p *Proxy
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.p.in.Add(float64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.p.out.Add(float64(n))
	return n, err
}

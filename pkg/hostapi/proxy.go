package hostapi

import (
	"net/http"
	"net/http/httputil"
)

// ServeProxied serves r through rp in full duplex: the response may start
// while the request's body is still being forwarded. Without it, net/http's
// HTTP/1 server, on writing the headers of a response whose request body
// the proxy's transport has not finished reading, reads the body itself,
// which can cancel the request and cut the streamed response mid-body
// (seen as about one runCode or commands.run in a hundred failing with
// "other side closed" through the sandbox proxies).
func ServeProxied(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy) {
	_ = http.NewResponseController(w).EnableFullDuplex()
	rp.ServeHTTP(w, r)
}

package faults3

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is a reverse proxy on 127.0.0.1 in front of one S3 endpoint.
type Proxy struct {
	// URL is the proxy's endpoint, http://127.0.0.1:port: use it as the location's s3Url.
	URL string

	target  *url.URL
	rp      *httputil.ReverseProxy
	srv     *http.Server
	ln      net.Listener
	closed  chan struct{}
	closing sync.Once

	mu     sync.Mutex
	rules  []*Rule
	held   map[net.Conn]struct{}
	counts Counts

	putBytes atomic.Int64
}

// Counts are what the proxy saw and did since it started (or since ResetCounts).
type Counts struct {
	// Requests counts requests by method.
	Requests map[string]int64
	// Forwarded counts the requests passed to the server (delayed ones included).
	Forwarded int64
	// Injected counts the faults injected, by kind.
	Injected map[Kind]int64
}

// Start starts a proxy in front of target, an http://host:port endpoint.
func Start(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("faults3: target %q must look like http://host:port", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faults3: listen: %w", err)
	}
	p := &Proxy{URL: "http://" + ln.Addr().String(), target: u, ln: ln, closed: make(chan struct{}),
		held: map[net.Conn]struct{}{}}
	p.counts = Counts{Requests: map[string]int64{}, Injected: map[Kind]int64{}}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			// S3 signs the Host header: the server must see the one the client signed.
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second},
		// A client that gives up mid-request is what these tests are about, not news.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Close stops the proxy and ends every connection it holds.
func (p *Proxy) Close() error {
	p.closing.Do(func() { close(p.closed) })
	p.mu.Lock()
	for c := range p.held {
		_ = c.Close()
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		return p.srv.Close()
	}
	return nil
}

// Add installs a fault; the first rule that matches a request decides it. The returned rule
// can be removed again.
func (p *Proxy) Add(f Fault) *Rule {
	r := &Rule{Fault: f}
	p.mu.Lock()
	p.rules = append(p.rules, r)
	p.mu.Unlock()
	return r
}

// Remove uninstalls a rule; requests it holds (Drop) are released with a connection close.
func (p *Proxy) Remove(r *Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.rules {
		if x == r {
			p.rules = append(p.rules[:i], p.rules[i+1:]...)
			return
		}
	}
}

// Clear removes every rule: the proxy forwards everything again. Requests already held by a
// Drop stay held until their client gives up.
func (p *Proxy) Clear() {
	p.mu.Lock()
	p.rules = nil
	p.mu.Unlock()
}

// Counts returns a copy of the counters.
func (p *Proxy) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := Counts{Requests: map[string]int64{}, Injected: map[Kind]int64{}, Forwarded: p.counts.Forwarded}
	for k, v := range p.counts.Requests {
		c.Requests[k] = v
	}
	for k, v := range p.counts.Injected {
		c.Injected[k] = v
	}
	return c
}

// ForwardedPutBytes is the size of the PUT bodies passed to the server: what a client uploaded.
func (p *Proxy) ForwardedPutBytes() int64 { return p.putBytes.Load() }

// ResetCounts zeroes the counters (not the rules' own match counts).
func (p *Proxy) ResetCounts() {
	p.mu.Lock()
	p.counts = Counts{Requests: map[string]int64{}, Injected: map[Kind]int64{}}
	p.mu.Unlock()
	p.putBytes.Store(0)
}

// Held returns the number of connections a Drop holds right now.
func (p *Proxy) Held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.held)
}

func (p *Proxy) serve(w http.ResponseWriter, req *http.Request) {
	key := objectKey(req.URL.Path)
	p.mu.Lock()
	p.counts.Requests[req.Method]++
	var fault *Fault
	for _, r := range p.rules {
		if r.decide(req.Method, key) {
			fault = &r.Fault
			p.counts.Injected[r.Kind]++
			break
		}
	}
	if fault == nil || fault.Kind == Delay {
		p.counts.Forwarded++
	}
	p.mu.Unlock()
	if fault == nil {
		p.forward(w, req)
		return
	}
	p.inject(w, req, fault)
}

func (p *Proxy) forward(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodPut && req.Body != nil {
		req.Body = &countingBody{ReadCloser: req.Body, n: &p.putBytes}
	}
	p.rp.ServeHTTP(w, req)
}

func (p *Proxy) inject(w http.ResponseWriter, req *http.Request, f *Fault) {
	switch f.Kind {
	case Delay:
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
			p.forward(w, req)
		case <-req.Context().Done():
		case <-p.closed:
		}
	case Drop:
		p.hold(w)
	case Reset:
		p.reset(w)
	case Error, Full:
		status, code, msg := f.response()
		_, _ = io.Copy(io.Discard, req.Body) // the client reads the answer once its body is sent
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
			`<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource><RequestId>faults3</RequestId></Error>`,
			code, msg, req.URL.Path)
	}
}

// hold takes the connection over and reads (discards) from it until the client closes it or
// the proxy closes: the server never answers.
func (p *Proxy) hold(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	p.mu.Lock()
	p.held[conn] = struct{}{}
	p.mu.Unlock()
	_, _ = io.Copy(io.Discard, conn)
	p.mu.Lock()
	delete(p.held, conn)
	p.mu.Unlock()
	_ = conn.Close()
}

// reset closes the connection with a TCP RST.
func (p *Proxy) reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// objectKey returns the object key of a path-style request, /bucket/key → key.
func objectKey(path string) string {
	_, key, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return key
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n.Add(int64(n))
	return n, err
}

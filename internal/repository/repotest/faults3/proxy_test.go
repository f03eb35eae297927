package faults3_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferry-backup/ferry/internal/repository/repotest/faults3"
)

func TestRuleScope(t *testing.T) {
	type req struct{ method, path string }
	tests := []struct {
		name  string
		fault faults3.Fault
		reqs  []req
		want  []bool // injected?
	}{
		{"method", faults3.Fault{Kind: faults3.Error, Method: http.MethodPut},
			[]req{{"GET", "/b/k"}, {"PUT", "/b/k"}}, []bool{false, true}},
		{"key prefix after the bucket", faults3.Fault{Kind: faults3.Error, KeyPrefix: "ferry/p"},
			[]req{{"GET", "/b/ferry/q1"}, {"GET", "/b/ferry/p1"}, {"GET", "/ferry/p1"}}, []bool{false, true, false}},
		{"except a key prefix", faults3.Fault{Kind: faults3.Error, KeyPrefix: "ferry/", ExceptKeyPrefix: "ferry/lock"},
			[]req{{"GET", "/b/ferry/lock.1"}, {"GET", "/b/ferry/p1"}}, []bool{false, true}},
		{"after and every", faults3.Fault{Kind: faults3.Error, After: 1, Every: 2},
			[]req{{"GET", "/b/1"}, {"GET", "/b/2"}, {"GET", "/b/3"}, {"GET", "/b/4"}, {"GET", "/b/5"}},
			[]bool{false, false, true, false, true}},
		{"limit", faults3.Fault{Kind: faults3.Error, Limit: 1},
			[]req{{"GET", "/b/1"}, {"GET", "/b/2"}}, []bool{true, false}},
		{"full refuses only uploads", faults3.Fault{Kind: faults3.Full},
			[]req{{"GET", "/b/1"}, {"HEAD", "/b/1"}, {"DELETE", "/b/1"}, {"PUT", "/b/1"}}, []bool{false, false, false, true}},
	}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer backend.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, backend.URL)
			p.Add(tt.fault)
			for i, r := range tt.reqs {
				req, _ := http.NewRequest(r.method, p.URL+r.path, strings.NewReader("x"))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_ = resp.Body.Close()
				if got := resp.StatusCode != http.StatusOK; got != tt.want[i] {
					t.Errorf("request %d %s %s: status %d, want injected=%v", i, r.method, r.path, resp.StatusCode, tt.want[i])
				}
			}
		})
	}
}

func TestFaultKinds(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}))
	defer backend.Close()
	p := start(t, backend.URL)
	// No keep-alive: Go retries an idempotent request whose reused connection was reset.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	t.Run("error", func(t *testing.T) {
		r := p.Add(faults3.Fault{Kind: faults3.Error, Status: http.StatusServiceUnavailable})
		defer p.Remove(r)
		status, body, err := do(t.Context(), client, http.MethodGet, p.URL+"/b/k")
		if err != nil || status != http.StatusServiceUnavailable || !strings.Contains(body, "<Code>SlowDown</Code>") {
			t.Errorf("got %d %q %v, want 503 with an S3 SlowDown error", status, body, err)
		}
	})
	t.Run("full", func(t *testing.T) {
		r := p.Add(faults3.Fault{Kind: faults3.Full})
		defer p.Remove(r)
		status, body, err := do(t.Context(), client, http.MethodPut, p.URL+"/b/k")
		if err != nil || status != http.StatusInsufficientStorage || !strings.Contains(body, "XMinioStorageFull") {
			t.Errorf("got %d %q %v, want 507 XMinioStorageFull", status, body, err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		r := p.Add(faults3.Fault{Kind: faults3.Reset})
		defer p.Remove(r)
		if status, _, err := do(t.Context(), client, http.MethodGet, p.URL+"/b/k"); err == nil {
			t.Errorf("got status %d, want a connection error", status)
		}
	})
	t.Run("drop holds until the client gives up", func(t *testing.T) {
		r := p.Add(faults3.Fault{Kind: faults3.Drop})
		defer p.Remove(r)
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		if _, _, err := do(ctx, client, http.MethodGet, p.URL+"/b/k"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want the client's deadline", err)
		}
		waitFor(t, func() bool { return p.Held() == 0 }, "the dropped connection to be let go")
	})
	t.Run("delay then forward", func(t *testing.T) {
		r := p.Add(faults3.Fault{Kind: faults3.Delay, Delay: 100 * time.Millisecond})
		defer p.Remove(r)
		start := time.Now()
		status, body, err := do(t.Context(), client, http.MethodGet, p.URL+"/b/k")
		if err != nil || status != http.StatusOK || body != "ok" {
			t.Errorf("got %d %q %v, want the server's answer", status, body, err)
		}
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Errorf("answered after %s, before the delay", d)
		}
	})
	c := p.Counts()
	for _, k := range []faults3.Kind{faults3.Error, faults3.Full, faults3.Reset, faults3.Drop, faults3.Delay} {
		if c.Injected[k] != 1 {
			t.Errorf("injected %s = %d, want 1", k, c.Injected[k])
		}
	}
	if c.Requests[http.MethodGet] != 4 || c.Requests[http.MethodPut] != 1 || c.Forwarded != 1 {
		t.Errorf("counts = %+v, want 4 GETs, 1 PUT, 1 forwarded", c)
	}
}

func start(t *testing.T, target string) *faults3.Proxy {
	t.Helper()
	p, err := faults3.Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if !strings.HasPrefix(p.URL, "http://127.0.0.1:") {
		t.Fatalf("proxy listens at %s, want 127.0.0.1 only", p.URL)
	}
	return p
}

func do(ctx context.Context, c *http.Client, method, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader("body"))
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}

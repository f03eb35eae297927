package testenv

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"k8s.io/client-go/rest"
)

// Requests counts the requests clients make to the API server, by method and path.
type Requests struct {
	mu     sync.Mutex
	counts map[string]int
}

// CountRequests returns a copy of cfg whose clients count their requests in the returned Requests.
func CountRequests(cfg *rest.Config) (*rest.Config, *Requests) {
	reqs := &Requests{counts: map[string]int{}}
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			reqs.mu.Lock()
			reqs.counts[req.Method+" "+req.URL.Path]++
			reqs.mu.Unlock()
			return rt.RoundTrip(req)
		})
	})
	return cfg, reqs
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// Snapshot returns the counts so far, keyed "METHOD /path".
func (r *Requests) Snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.counts)
}

// Since returns the requests made since an earlier Snapshot whose method is one of methods
// (any when none is given), and their total.
func (r *Requests) Since(before map[string]int, methods ...string) (map[string]int, int) {
	diff, total := map[string]int{}, 0
	for k, v := range r.Snapshot() {
		method, _, _ := strings.Cut(k, " ")
		if n := v - before[k]; n > 0 && (len(methods) == 0 || slices.Contains(methods, method)) {
			diff[k], total = n, total+n
		}
	}
	return diff, total
}

// Describe lists counts, one "METHOD /path: N" per line.
func Describe(counts map[string]int) string {
	lines := make([]string, 0, len(counts))
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		lines = append(lines, fmt.Sprintf("%s: %d", k, counts[k]))
	}
	return strings.Join(lines, "\n")
}

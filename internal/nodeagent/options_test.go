package nodeagent

import (
	"strings"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Options)
		want   string // empty: valid
	}{
		{"defaults with a node", func(o *Options) { o.NodeName = "node-a" }, ""},
		{"no node", func(o *Options) { o.NodeName = "" }, "--node-name"},
		{"no host pods root", func(o *Options) { o.NodeName = "n"; o.HostPodsRoot = "" }, "--host-pods-root"},
		{"bad metrics address", func(o *Options) { o.NodeName = "n"; o.MetricsAddr = "8080" }, "--metrics-bind-address"},
		{"bad log level", func(o *Options) { o.NodeName = "n"; o.Logging.Level = "loud" }, "--log-level"},
		{"metrics disabled", func(o *Options) { o.NodeName = "n"; o.MetricsAddr = "0" }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOptions()
			tc.mutate(&o)
			err := o.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error = %v, want one naming %s", err, tc.want)
			}
		})
	}
}

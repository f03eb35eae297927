package schedule

import (
	"testing"
	"time"
)

// The latest time of a cron expression between the last run and now stands for every time
// missed in between; none is due before the first time.
func TestLatestDue(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		name, spec, after, now, want string
	}{
		{"not yet", "0 * * * *", "2026-11-02T10:00:00Z", "2026-11-02T10:59:59Z", ""},
		{"on the dot", "0 * * * *", "2026-11-02T10:00:00Z", "2026-11-02T11:00:00Z", "2026-11-02T11:00:00Z"},
		{"three missed", "0 * * * *", "2026-11-02T10:00:00Z", "2026-11-02T13:10:00Z", "2026-11-02T13:00:00Z"},
		{"a year missed, daily", "30 2 * * *", "2025-11-02T10:00:00Z", "2026-11-02T01:00:00Z", "2026-11-01T02:30:00Z"},
		{"dense hours", "* 3 * * *", "2026-11-01T00:00:00Z", "2026-11-02T23:00:00Z", "2026-11-02T03:59:00Z"},
		{"@every from the last run", "@every 90m", "2026-11-02T10:00:20Z", "2026-11-02T15:00:00Z", "2026-11-02T14:30:20Z"},
		{"@every not yet", "@every 90m", "2026-11-02T10:00:20Z", "2026-11-02T11:00:00Z", ""},
		{"in another zone", "CRON_TZ=Europe/Paris 0 3 * * *", "2026-11-01T00:00:00Z", "2026-11-02T12:00:00Z", "2026-11-02T02:00:00Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sched, err := parse(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			got := latestDue(sched, at(c.after), at(c.now))
			want := time.Time{}
			if c.want != "" {
				want = at(c.want)
			}
			if !got.Equal(want) {
				t.Fatalf("latestDue(%q, %s, %s) = %s, want %s", c.spec, c.after, c.now, got, want)
			}
		})
	}
}

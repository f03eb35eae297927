package shared_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ferry-backup/ferry/api/shared"
)

type spec struct {
	Timeout  shared.Duration  `json:"timeout,omitempty"`
	Optional *shared.Duration `json:"optional,omitempty"`
}

func TestDurationJSON(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     time.Duration
		invalid  string
		// out is what is written back; in when empty.
		out string
	}{
		{name: "valid", in: `{"timeout":"1h30m0s"}`, want: 90 * time.Minute},
		{name: "valid, written as Go writes it", in: `{"timeout":"90m"}`, want: 90 * time.Minute, out: `{"timeout":"1h30m0s"}`},
		{name: "zero", in: `{"timeout":"0s"}`},
		{name: "empty", in: `{"timeout":""}`, out: `{"timeout":"0s"}`},
		{name: "null", in: `{"timeout":null}`, out: `{"timeout":"0s"}`},
		{name: "absent", in: `{}`, out: `{"timeout":"0s"}`},
		{name: "too long", in: `{"timeout":"9999999999h"}`, invalid: "9999999999h"},
		{name: "no unit", in: `{"timeout":"10"}`, invalid: "10"},
		{name: "garbage", in: `{"timeout":"soon \"ish\""}`, invalid: `soon "ish"`},
		{name: "not a string", in: `{"timeout":3600}`, invalid: "3600", out: `{"timeout":"3600"}`},
		{name: "an object", in: `{"timeout":{"a": 1}}`, invalid: `{"a":1}`, out: `{"timeout":"{\"a\":1}"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s spec
			if err := json.Unmarshal([]byte(tc.in), &s); err != nil {
				t.Fatalf("unmarshal %s: %v", tc.in, err)
			}
			if s.Timeout.Duration != tc.want || s.Timeout.Invalid != tc.invalid {
				t.Errorf("unmarshal %s = %v, Invalid %q; want %v, Invalid %q", tc.in, s.Timeout.Duration, s.Timeout.Invalid, tc.want, tc.invalid)
			}
			if err := s.Timeout.Err("spec.timeout"); (err != nil) != (tc.invalid != "") {
				t.Errorf("Err = %v, want an error only for an invalid duration", err)
			}
			out, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.out
			if want == "" {
				want = tc.in
			}
			if string(out) != want {
				t.Errorf("marshal = %s, want %s", out, want)
			}
		})
	}
}

// Every value that decodes writes back as it decodes again: an object read and written back,
// e.g. by a status update through the object, keeps what its author wrote.
func TestDurationRoundTripIsStable(t *testing.T) {
	for _, in := range []string{`"1h"`, `"9999999999h"`, `"-5m"`, `""`, `"x"`, `7`, `true`, `[1,2]`} {
		var d shared.Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		once, _ := json.Marshal(d)
		var again shared.Duration
		if err := json.Unmarshal(once, &again); err != nil {
			t.Fatalf("%s: written as %s, read back: %v", in, once, err)
		}
		if again != d {
			t.Errorf("%s: read %+v, written as %s, read back as %+v", in, d, once, again)
		}
	}
}

// Malformed JSON is still an error.
func TestDurationMalformedJSON(t *testing.T) {
	var d shared.Duration
	if err := d.UnmarshalJSON([]byte(`"unterminated`)); err == nil {
		t.Errorf("malformed JSON decoded as %+v", d)
	}
}

// A valid duration reads and writes as metav1.Duration does, so switching types changes no
// stored object.
func TestDurationMatchesMetav1(t *testing.T) {
	for _, in := range []string{`"1h"`, `"1.5s"`, `"0s"`, `"-3m"`, `"100ms"`, `"876000h"`} {
		var ours shared.Duration
		var theirs metav1.Duration
		if err := json.Unmarshal([]byte(in), &ours); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(in), &theirs); err != nil {
			t.Fatal(err)
		}
		a, _ := json.Marshal(ours)
		b, _ := json.Marshal(theirs)
		if ours.Duration != theirs.Duration || string(a) != string(b) {
			t.Errorf("%s: ours %v → %s, metav1 %v → %s", in, ours.Duration, a, theirs.Duration, b)
		}
	}
}

func TestDurationDeepCopyKeepsInvalid(t *testing.T) {
	d := &shared.Duration{Invalid: "9999999999h"}
	if c := d.DeepCopy(); *c != *d {
		t.Errorf("DeepCopy = %+v, want %+v", *c, *d)
	}
}

// The unstructured converter (used by server-side apply and by fake and unstructured clients)
// round-trips valid and invalid durations alike.
func TestDurationUnstructured(t *testing.T) {
	for _, d := range []shared.Duration{{Duration: time.Minute}, {Invalid: "9999999999h"}, {}} {
		in := &spec{Timeout: d, Optional: &d}
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(in)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := u["timeout"], d.String(); got != want {
			t.Errorf("ToUnstructured timeout = %#v, want %q", got, want)
		}
		out := &spec{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u, out); err != nil {
			t.Fatalf("FromUnstructured %v: %v", u, err)
		}
		if out.Timeout != d || out.Optional == nil || *out.Optional != d {
			t.Errorf("unstructured round trip of %+v = %+v, %+v", d, out.Timeout, out.Optional)
		}
	}
}

func TestDurationErrNamesTheField(t *testing.T) {
	var d shared.Duration
	if err := json.Unmarshal([]byte(`"9999999999h"`), &d); err != nil {
		t.Fatal(err)
	}
	err := d.Err("spec.operationTimeout")
	if err == nil {
		t.Fatal("Err = nil for an invalid duration")
	}
	want := `spec.operationTimeout: "9999999999h" is not a duration (time: invalid duration "9999999999h")`
	if err.Error() != want {
		t.Errorf("Err = %q, want %q", err, want)
	}
	if d.String() != "9999999999h" || !strings.Contains(d.Err("x").Error(), "x: ") {
		t.Errorf("String = %q", d.String())
	}
	if err := (shared.Duration{Duration: time.Hour}).Err("spec.ttl"); err != nil {
		t.Errorf("Err of a valid duration = %v", err)
	}
}

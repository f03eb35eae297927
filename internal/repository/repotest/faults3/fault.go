package faults3

import (
	"net/http"
	"strings"
	"time"
)

// Kind is what a fault does to a request.
type Kind int

// Kinds of fault.
const (
	// Drop holds the connection and never answers, until the client gives up.
	Drop Kind = iota + 1
	// Delay forwards the request after Fault.Delay.
	Delay
	// Reset closes the connection with a TCP reset before answering.
	Reset
	// Error answers with Fault.Status (default 500) and an S3 error document.
	Error
	// Full refuses PUT requests as a full bucket does: MinIO's 507 XMinioStorageFull. Other
	// methods are forwarded.
	Full
)

func (k Kind) String() string {
	switch k {
	case Drop:
		return "drop"
	case Delay:
		return "delay"
	case Reset:
		return "reset"
	case Error:
		return "error"
	case Full:
		return "full"
	}
	return "unknown"
}

// Fault is one fault and the requests it applies to. Zero match fields match every request.
type Fault struct {
	Kind Kind
	// Method limits the fault to one HTTP method (GET, PUT, HEAD, DELETE, POST).
	Method string
	// KeyPrefix limits the fault to object keys (the path after the bucket) with this prefix,
	// e.g. "ferry/p" for Kopia's data packs in a repository at prefix "ferry".
	KeyPrefix string
	// ExceptKeyPrefix leaves object keys with this prefix alone.
	ExceptKeyPrefix string
	// After lets the first After matching requests through untouched.
	After int
	// Every applies the fault to every Nth matching request after those (default 1: all).
	Every int
	// Limit stops injecting after Limit faults (0: no limit).
	Limit int
	// Delay is the delay of a Delay fault.
	Delay time.Duration
	// Status and Code are the answer of an Error fault (default 500 InternalError; 503 gets
	// SlowDown).
	Status int
	Code   string
}

// Rule is an installed fault with its own match counters.
type Rule struct {
	Fault
	matched, injected int
}

// decide reports whether the rule injects its fault into the request; the proxy's lock is held.
func (r *Rule) decide(method, key string) bool {
	if r.Method != "" && r.Method != method {
		return false
	}
	if r.Kind == Full && method != http.MethodPut {
		return false
	}
	if !strings.HasPrefix(key, r.KeyPrefix) || (r.ExceptKeyPrefix != "" && strings.HasPrefix(key, r.ExceptKeyPrefix)) {
		return false
	}
	r.matched++
	if r.matched <= r.After {
		return false
	}
	every := max(r.Every, 1)
	if (r.matched-r.After)%every != 0 {
		return false
	}
	if r.Limit > 0 && r.injected >= r.Limit {
		return false
	}
	r.injected++
	return true
}

// response returns the status, S3 error code and message of an Error or Full fault.
func (f *Fault) response() (int, string, string) {
	if f.Kind == Full {
		return http.StatusInsufficientStorage, "XMinioStorageFull",
			"Storage backend has reached its minimum free drive threshold. Please delete a few objects to proceed."
	}
	status, code := f.Status, f.Code
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if code == "" {
		code = "InternalError"
		if status == http.StatusServiceUnavailable {
			code = "SlowDown"
		}
	}
	return status, code, "injected by faults3"
}

package main

import (
	"strconv"
	"time"
)

// words, levels and components make up the generated log lines: realistic, compressible text.
var (
	words = [...]string{
		"volume", "snapshot", "backup", "restore", "node", "pod", "namespace", "cluster",
		"request", "response", "timeout", "retry", "connected", "disconnected", "started", "finished",
		"upload", "download", "chunk", "index", "manifest", "policy", "schedule", "maintenance",
		"the", "a", "of", "to", "in", "for", "with", "from", "after", "before", "while", "during",
		"failed", "succeeded", "pending", "running", "queued", "skipped", "cached", "hashed",
		"bytes", "files", "directories", "seconds", "errors", "warnings", "objects", "blocks",
		"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
	}
	levels     = [...]string{"DEBUG", "INFO ", "INFO ", "INFO ", "INFO ", "WARN ", "ERROR"}
	components = [...]string{"api", "scheduler", "controller", "agent", "mover", "storage", "cache", "auth"}
)

// fillText fills b with the next bytes of an endless stream of log lines.
func (w *writer) fillText(b []byte) {
	for len(b) > 0 {
		if len(w.pending) == 0 {
			w.line = w.appendLine(w.line[:0])
			w.pending = w.line
		}
		n := copy(b, w.pending)
		b = b[n:]
		w.pending = w.pending[n:]
	}
}

// appendLine appends one log line such as
// `2024-01-01T00:00:01.234Z INFO  [agent] id=000042 latency_ms=17 msg="upload of chunk failed"`.
func (w *writer) appendLine(b []byte) []byte {
	w.seq++
	ts := baseTime.Add(time.Duration(w.seq) * lineInterval)
	b = ts.AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = append(b, ' ')
	b = append(b, levels[w.rng.IntN(len(levels))]...)
	b = append(b, " ["...)
	b = append(b, components[w.rng.IntN(len(components))]...)
	b = append(b, "] id="...)
	b = strconv.AppendInt(b, w.seq, 10)
	b = append(b, " latency_ms="...)
	b = strconv.AppendInt(b, int64(w.rng.IntN(2000)), 10)
	b = append(b, ` msg="`...)
	for i := range 4 + w.rng.IntN(12) {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, words[w.rng.IntN(len(words))]...)
	}
	return append(b, "\"\n"...)
}

// lineInterval is the time between two generated log lines.
const lineInterval = 37 * time.Millisecond

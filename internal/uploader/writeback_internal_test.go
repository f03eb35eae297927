package uploader

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The flusher flushes once flushFiles files or flushBytes bytes were written, or after its
// interval when anything was; a failed flush is reported when it stops, even if later ones
// succeed (syncfs reports a write error only once).
func TestFlusherFlushesAsTheRestoreWritesAndKeepsItsFirstError(t *testing.T) {
	flushed := make(chan struct{}, 16)
	var fail atomic.Bool
	f := runFlusher(func() error {
		defer func() { flushed <- struct{}{} }()
		if fail.Load() {
			return errors.New("input/output error")
		}
		return nil
	}, time.Hour)
	for range flushFiles - 1 {
		f.wrote(1)
	}
	select {
	case <-flushed:
		t.Fatal("flushed before a threshold was reached")
	default:
	}
	f.wrote(1) // the flushFiles-th file
	<-flushed
	f.wrote(flushBytes) // one large file
	<-flushed
	fail.Store(true)
	f.wrote(flushBytes)
	<-flushed
	fail.Store(false)
	f.wrote(flushBytes)
	<-flushed
	if err := f.stop(); err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Errorf("stop() = %v, want the failed flush's error", err)
	}

	ticking := runFlusher(func() error { flushed <- struct{}{}; return nil }, time.Millisecond)
	ticking.wrote(1) // far below the thresholds: flushed on the next tick
	<-flushed
	if err := ticking.stop(); err != nil {
		t.Errorf("stop() = %v", err)
	}
}

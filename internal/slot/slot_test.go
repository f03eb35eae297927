package slot

import (
	"context"
	"testing"
	"time"
)

func TestPoolLimitsAndWakes(t *testing.T) {
	p := New(1)
	release, err := p.Acquire(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	got := make(chan func())
	go func() {
		r, err := p.Acquire(context.Background(), func() { close(waited) })
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	<-waited
	if used, size, waiting := p.Stats(); used != 1 || size != 1 || waiting != 1 {
		t.Fatalf("stats = %d/%d, %d waiting; want 1/1, 1 waiting", used, size, waiting)
	}
	select {
	case <-got:
		t.Fatal("second operation got a slot while the first held the only one")
	default:
	}
	release()
	release() // a second call is harmless
	second := <-got
	if used, _, waiting := p.Stats(); used != 1 || waiting != 0 {
		t.Fatalf("after handing over: used %d, waiting %d", used, waiting)
	}
	second()
}

func TestPoolGrowsAndCancels(t *testing.T) {
	p := New(1)
	hold, _ := p.Acquire(t.Context(), nil)
	defer hold()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(ctx, nil); err == nil {
		t.Fatal("acquired a slot from a full pool")
	}
	if _, _, waiting := p.Stats(); waiting != 0 {
		t.Fatalf("a canceled waiter is still counted: %d", waiting)
	}
	done := make(chan struct{})
	waiting := make(chan struct{})
	go func() {
		r, err := p.Acquire(context.Background(), func() { close(waiting) })
		if err == nil {
			r()
		}
		close(done)
	}()
	<-waiting
	p.Resize(2)
	<-done
}

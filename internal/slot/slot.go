// Package slot provides a resizable limit on how many operations run at once, with the number
// of operations waiting for a slot visible to status and metrics.
package slot

import (
	"context"
	"sync"
)

// Pool hands out a bounded number of slots.
type Pool struct {
	mu      sync.Mutex
	size    int
	used    int
	waiting int
	freed   chan struct{} // closed and replaced whenever a slot frees or the pool grows
}

// New returns a pool of size slots (at least 1).
func New(size int) *Pool {
	return &Pool{size: max(size, 1), freed: make(chan struct{})}
}

// Resize changes the number of slots. Running operations keep theirs; when the pool shrinks,
// new operations wait until enough have finished.
func (p *Pool) Resize(size int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.size = max(size, 1)
	p.wakeLocked()
}

func (p *Pool) wakeLocked() {
	close(p.freed)
	p.freed = make(chan struct{})
}

// Acquire blocks until a slot is free or ctx ends. onWait, when not nil, is called once if the
// caller has to wait. The returned release must be called exactly once.
func (p *Pool) Acquire(ctx context.Context, onWait func()) (release func(), err error) {
	p.mu.Lock()
	counted := false
	for p.used >= p.size {
		if !counted {
			counted = true
			p.waiting++
			if onWait != nil {
				p.mu.Unlock()
				onWait()
				p.mu.Lock()
				continue
			}
		}
		freed := p.freed
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			p.mu.Lock()
			p.waiting--
			p.mu.Unlock()
			return nil, ctx.Err()
		case <-freed:
		}
		p.mu.Lock()
	}
	if counted {
		p.waiting--
	}
	p.used++
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			p.used--
			p.wakeLocked()
			p.mu.Unlock()
		})
	}, nil
}

// Stats returns the slots in use, the pool size and the number of waiting operations.
func (p *Pool) Stats() (used, size, waiting int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used, p.size, p.waiting
}
